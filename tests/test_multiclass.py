"""Single-label multiclass tasks and `--metric`: task detection, validation, metric forms, stacking (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ensemble.artifacts.competition import Competition
from ensemble.cli import app
from ensemble.errors import ConfigError, DataError
from ensemble.metrics.scorer import get_scorer
from conftest import hand_sidecar
from ensemble.task import MULTICLASS, MULTILABEL
from stacking import compare, stack

runner = CliRunner()
CLASSES = ["human", "espeak", "festival", "flite"]


def ens(*args):
    return runner.invoke(app, [str(a) for a in args])


def csv_multiclass(root: Path, n: int = 40, sample_value: float = 0.25) -> Path:
    """A multiclass folder with CSVs only: `label` column, four classes, sample rows of 0.25."""
    root.mkdir(parents=True, exist_ok=True)
    ids = [f"TRAIN_{i:03d}" for i in range(n)]
    labels = [CLASSES[i % 4] for i in range(n)]
    pd.DataFrame({"id": ids, "path": [f"train/{i}.ogg" for i in ids], "label": labels}).to_csv(root / "train.csv", index=False)
    test = [f"TEST_{i:03d}" for i in range(8)]
    pd.DataFrame({"id": test, "path": [f"test/{i}.ogg" for i in test]}).to_csv(root / "test.csv", index=False)
    pd.DataFrame({"id": test, **{c: sample_value for c in CLASSES}}).to_csv(root / "sample_submission.csv", index=False)
    return root


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


# ---- the task shape ----------------------------------------------------------------------------------

def test_task_is_detected_from_the_folder(tmp_path, csv_competition):
    assert Competition.load(csv_multiclass(tmp_path / "mc")).task is MULTICLASS
    assert Competition.load(csv_competition).task is MULTILABEL  # fake/real: two columns stay multi-label
    # the sample's values decide nothing (Kaggle files carry rounded, zero or one-hot rows): train.csv's labels do
    assert Competition.load(csv_multiclass(tmp_path / "ml", sample_value=0.5)).task is MULTICLASS
    assert Competition.load(csv_competition, "multiclass").task is MULTICLASS
    with pytest.raises(ConfigError, match="unknown task 'softmax'"):
        Competition.load(csv_competition, "softmax")


def test_task_and_metric_are_remembered_in_ens_toml(tmp_path, csv_competition, workspace):
    from ensemble.artifacts.competition import open_competition
    from ensemble.artifacts.workspace import Workspace

    ws = Workspace(workspace)
    comp = open_competition(ws, csv_competition, task="multiclass")
    assert comp.task is MULTICLASS and ws.settings() == {"data": str(csv_competition.resolve()), "task": "multiclass"}
    assert open_competition(ws).task is MULTICLASS  # remembered, without --task
    assert ws.metric(MULTICLASS, "macro-f1") == "macro-f1" and "metric" not in ws.settings()  # a getter only
    ws.remember_metric(MULTICLASS, "macro-f1")
    assert ws.metric(MULTICLASS) == "macro-f1"
    with pytest.raises(ConfigError, match="'competition' has no multiclass form"):
        ws.remember_metric(MULTICLASS, "competition")
    assert ws.settings()["metric"] == "macro-f1"  # a refused metric is not remembered


def test_unknown_class_and_multi_hot_rows_are_one_line_errors(tmp_path):
    root = csv_multiclass(tmp_path / "mc")
    train = pd.read_csv(root / "train.csv")
    train.loc[3, "label"] = "mbrola"
    train.to_csv(root / "train.csv", index=False)
    line = one_line_error(ens("stack", "x", "--data", root))
    assert "TRAIN_003" in line and "'mbrola'" in line and "train.csv" in line
    root2 = csv_multiclass(tmp_path / "mc2")
    train = pd.read_csv(root2 / "train.csv").drop(columns="label")
    for c in CLASSES:
        train[c] = 0
    train.loc[:, "human"] = 1
    train.loc[5, "espeak"] = 1  # two classes in one row
    train.to_csv(root2 / "train.csv", index=False)
    line = one_line_error(ens("stack", "x", "--data", root2, "--task", "multiclass"))
    assert "TRAIN_005" in line and "2 classes" in line


def answers_and_submission(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = [f"TEST_{i:03d}" for i in range(20)]
    truth = np.eye(4)[np.arange(20) % 4]
    p = rng.dirichlet(np.ones(4), size=20) * 0.5 + truth * 0.5
    pd.DataFrame({"id": ids, **{c: truth[:, j].astype(int) for j, c in enumerate(CLASSES)}}).to_csv(
        tmp_path / "answers.csv", index=False)
    pd.DataFrame({"id": ids, **{c: p[:, j] for j, c in enumerate(CLASSES)}}).to_csv(tmp_path / "sub.csv", index=False)
    return tmp_path / "answers.csv", tmp_path / "sub.csv", p


def test_score_multiclass_with_each_metric_matches_scikit_learn(tmp_path):
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    answers, sub, p = answers_and_submission(tmp_path)
    t = np.arange(20) % 4
    expected = {"logloss": log_loss(t, p), "accuracy": accuracy_score(t, p.argmax(1)),
                "macro-f1": f1_score(t, p.argmax(1), average="macro"),
                "macro-auc": roc_auc_score(t, p, multi_class="ovr", average="macro"),
                "auc": roc_auc_score(np.eye(4)[t].ravel(), p.ravel())}
    for metric, value in expected.items():
        result = ens("score", sub, "--answers", answers, "--metric", metric, "--format", "json")
        assert result.exit_code == 0, result.output
        out = json.loads(result.output)
        assert out["score"] == pytest.approx(value, abs=1e-12), metric
    report = out["labels"]["*"]
    assert report["confusion"] == [[int(((t == a) & (p.argmax(1) == b)).sum()) for b in range(4)] for a in range(4)]
    assert set(out["labels"]["flite"]) == {"precision", "recall", "f1"}
    table = ens("score", sub, "--answers", answers)
    assert table.exit_code == 0 and "accuracy" in table.output and "macro-F1" in table.output


def test_score_refuses_rows_not_summing_to_one_and_missing_class_columns(tmp_path):
    answers, sub, p = answers_and_submission(tmp_path)
    frame = pd.read_csv(sub)
    frame.loc[7, "espeak"] += 0.01
    frame.to_csv(tmp_path / "bad.csv", index=False)
    line = one_line_error(ens("score", tmp_path / "bad.csv", "--answers", answers))
    assert "TEST_007" in line and "sum" in line
    frame = pd.read_csv(sub).drop(columns="festival")
    frame.to_csv(tmp_path / "missing.csv", index=False)
    line = one_line_error(ens("score", tmp_path / "missing.csv", "--answers", answers))
    assert "'festival'" in line and "missing.csv" in line
    line = one_line_error(ens("score", sub, "--answers", answers, "--metric", "dacon-fakevoice"))
    assert "no multiclass form" in line


def test_default_metric_and_its_alias_score_fake_real_as_before(tmp_path):
    ids = [f"T{i}" for i in range(30)]
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (30, 2))
    p = np.clip(y * 0.6 + rng.random((30, 2)) * 0.4, 0, 1)
    pd.DataFrame({"id": ids, "fake": y[:, 0], "real": y[:, 1]}).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame({"id": ids, "fake": p[:, 0], "real": p[:, 1]}).to_csv(tmp_path / "s.csv", index=False)
    plain = ens("score", tmp_path / "s.csv", "--answers", tmp_path / "a.csv", "--format", "json")
    alias = ens("score", tmp_path / "s.csv", "--answers", tmp_path / "a.csv", "--format", "json", "--metric", "dacon-fakevoice")
    assert plain.exit_code == 0 and plain.output == alias.output
    assert get_scorer("dacon-fakevoice") is get_scorer("competition")


# ---- stacking ----------------------------------------------------------------------------------------

def runs_tensor(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.eye(4)[rng.integers(0, 4, n)]

    def run(noise: float) -> np.ndarray:
        z = 3 * y + rng.normal(0, noise, y.shape)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    return np.stack([run(1.5), run(2.0), run(3.0)], axis=1), y, np.arange(n) % 4


@pytest.mark.parametrize("method", ["mean", "logit", "weighted", "hillclimb", "logreg", "lgbm", "single"])
def test_every_multiclass_method_writes_rows_summing_to_one(method):
    P, y, folds = runs_tensor()
    result = stack(P, y, folds, P[:50], method=method, labels=CLASSES, task=MULTICLASS, metric="logloss")
    assert np.abs(result.test.sum(axis=1) - 1).max() < 1e-9
    assert np.abs(result.oof.sum(axis=1) - 1).max() < 1e-9
    assert result.nested.score == pytest.approx(get_scorer("logloss", MULTICLASS)(y, result.oof))


def test_learned_blends_beat_the_best_run_and_temperature_keeps_the_argmax():
    P, y, folds = runs_tensor()
    comparison = compare(P, y, folds, task=MULTICLASS, metric="logloss")
    rows = {r["method"]: r["score"] for r in comparison.rows}
    assert min(rows["weighted"], rows["hillclimb"], rows["logreg"]) < rows["run:run0"] - 0.05
    assert "rank" not in rows and "flip" not in rows  # label-by-label methods are not candidates
    result = stack(P, y, folds, P[:50], method="single", calibrate="temperature", labels=CLASSES,
                   task=MULTICLASS, metric="logloss")
    assert (result.test.argmax(axis=1) == P[:50, 0].argmax(axis=1)).all()
    assert result.recipe.calibrators[0].params["temperature"] != 1.0


def test_label_by_label_options_refuse_multiclass_in_one_line():
    P, y, folds = runs_tensor(80)
    with pytest.raises(ConfigError, match="method 'rank' works label by label"):
        stack(P, y, folds, P[:5], method="rank", labels=CLASSES, task=MULTICLASS)
    with pytest.raises(ConfigError, match="--calibrate platt"):
        stack(P, y, folds, P[:5], method="mean", calibrate="platt", labels=CLASSES, task=MULTICLASS)
    with pytest.raises(ConfigError, match="--test-prior"):
        stack(P, y, folds, P[:5], method="mean", test_prior="em", labels=CLASSES, task=MULTICLASS)
    bad = P.copy()
    bad[3, 1, 0] += 0.1
    with pytest.raises(DataError, match="run 1's probabilities in row 3 sum to"):
        stack(bad, y, folds, P[:5], method="mean", labels=CLASSES, task=MULTICLASS)


def test_metric_auc_drives_hill_climbing_to_another_run():
    """Run 0 ranks perfectly but is squeezed near 0.5 (AUC 1, poor Brier and ECE); run 1 is calibrated but
    ranks worse: the competition score picks run 1, AUC picks run 0."""
    rng = np.random.default_rng(0)
    n = 600
    y = rng.integers(0, 2, (n, 1)).astype(float)
    order = rng.random((n, 1))
    squeezed = 0.45 + 0.1 * (y * 0.5 + order * 0.4)
    calibrated = np.clip(np.where(rng.random((n, 1)) < 0.8, y, 1 - y) * 0.8 + 0.1, 0, 1)
    P = np.stack([squeezed, calibrated], axis=1)
    folds = np.arange(n) % 3
    params = {"n_iter": 1, "n_bags": 1, "bag_fraction": 1.0}
    picks = {}
    for metric in (None, "auc"):
        result = stack(P, y, folds, P[:10], method="hillclimb", params=params, calibrate="none", labels=["fake"],
                       metric=metric)
        picks[metric] = int(np.argmax(result.recipe.blender["weights"][0]))
    assert picks == {None: 1, "auc": 0}


def test_stack_cli_remembers_the_metric_and_records_it(tmp_path, workspace):
    root = csv_multiclass(tmp_path / "mc")
    train = pd.read_csv(root / "train.csv")
    test_ids = pd.read_csv(root / "sample_submission.csv")["id"].tolist()
    y = np.eye(4)[[CLASSES.index(v) for v in train["label"]]]
    rng = np.random.default_rng(0)
    for k in range(2):
        p = rng.dirichlet(np.ones(4), size=len(y)) * 0.5 + y * 0.5
        pd.DataFrame({"id": train["id"], "fold": np.arange(len(y)) % 4, **{c: p[:, j] for j, c in enumerate(CLASSES)}}
                     ).to_csv(tmp_path / f"oof{k}.csv", index=False)
        t = rng.dirichlet(np.ones(4), size=len(test_ids))
        pd.DataFrame({"id": test_ids, **{c: t[:, j] for j, c in enumerate(CLASSES)}}).to_csv(tmp_path / f"t{k}.csv", index=False)
        assert ens("import", f"r{k}", "--test", tmp_path / f"t{k}.csv", "--oof", tmp_path / f"oof{k}.csv",
                   "--data", root).exit_code == 0
    result = ens("stack", "r0", "r1", "--method", "logit", "--metric", "accuracy", "--name", "blend")
    assert result.exit_code == 0, result.output
    sidecar = json.loads((workspace / "submissions" / "blend.json").read_text())
    assert sidecar["recipe"]["metric"] == "accuracy" and sidecar["recipe"]["task"] == "multiclass"
    sub = pd.read_csv(workspace / "submissions" / "blend.csv")
    assert np.abs(sub[CLASSES].sum(axis=1) - 1).max() < 1e-6
    assert 'metric = "accuracy"' in (workspace / "ens.toml").read_text()
    line = one_line_error(ens("stack", "r0", "r1", "--method", "flip"))
    assert "'flip' works label by label" in line
    board = json.loads(ens("board", "--format", "json").output)["rows"]  # ranked by accuracy, higher first
    runs = [r for r in board if r["kind"] == "run"]
    assert [r["accuracy"] for r in runs] == sorted((r["accuracy"] for r in runs), reverse=True)
    assert runs[0]["rank"] == 1 and runs[0]["cv"] == runs[0]["accuracy"] and runs[0]["logloss"] > 0
    blend = next(r for r in board if r["name"] == "blend")
    assert blend["cv"] == pytest.approx(sidecar["metrics"]["cv"]["score"]) and blend["macro_f1"] is not None
    by_logloss = json.loads(ens("board", "--format", "json", "--metric", "logloss").output)["rows"]
    assert next(r for r in by_logloss if r["name"] == "blend")["cv"] is None  # stacked with another metric


def test_import_refuses_multiclass_rows_not_summing_to_one(tmp_path, workspace):
    root = csv_multiclass(tmp_path / "mc")
    test_ids = pd.read_csv(root / "sample_submission.csv")["id"].tolist()
    t = np.full((len(test_ids), 4), 0.25)
    t[2, 0] = 0.5
    pd.DataFrame({"id": test_ids, **{c: t[:, j] for j, c in enumerate(CLASSES)}}).to_csv(tmp_path / "t.csv", index=False)
    line = one_line_error(ens("import", "r", "--test", tmp_path / "t.csv", "--data", root))
    assert "TEST_002" in line and "sum to 1" in line
    assert not (workspace / "models" / "r").exists()


def test_export_refuses_a_multiclass_submission_in_one_line(tmp_path, workspace):
    from dataclasses import replace

    from ensemble.artifacts.io import write_json

    (workspace / "submissions").mkdir()
    pd.DataFrame({"id": ["a"], "x": [1.0]}).to_csv(workspace / "submissions" / "mc.csv", index=False)
    sidecar = hand_sidecar("mc")
    sidecar.recipe = replace(sidecar.recipe, task="multiclass", labels=["x"])
    write_json(sidecar.to_dict(), workspace / "submissions" / "mc.json")
    line = one_line_error(ens("export", "mc"))
    assert "multiclass submission cannot be exported" in line


def test_meta_learners_fitted_on_one_class_predict_its_shares():
    """An inner fold may hold one class only (small data): logreg and lgbm fall back to the class shares."""
    from ensemble.stack.base import make_blender
    from ensemble.stack.state import blender_state

    P, y, _ = runs_tensor(40)
    one = np.zeros_like(y)
    one[:, 2] = 1
    for method in ("logreg", "lgbm"):
        blender = make_blender(method, MULTICLASS).fit(P, one)
        assert np.allclose(blender.predict(P[:5]), [0, 0, 1, 0])
        assert blender_state(blender)["models"] == [{"constant": [0.0, 0.0, 1.0, 0.0]}]


def test_augmentation_keeps_one_class_per_example():
    from ensemble.audio.augment import AugmentConfig, for_task

    kept = for_task(AugmentConfig.from_spec("default"), "default", MULTICLASS)
    assert kept.p_mix == 0 and kept.p_empty == 0 and kept.p_noise == AugmentConfig().p_noise
    for spec in ("none,mix", "default,p_mix=0.5", "none,p_empty=0.2", "none,empty"):
        with pytest.raises(ConfigError, match="one class per clip"):
            for_task(AugmentConfig.from_spec(spec), spec, MULTICLASS)
    assert for_task(AugmentConfig.from_spec("none,mix"), "none,mix", MULTILABEL) == AugmentConfig.from_spec("none,mix")


def test_a_submission_whose_rows_do_not_sum_to_one_is_not_written(tmp_path, workspace):
    from ensemble.artifacts.submission import submission_frame, write_submission
    from ensemble.artifacts.workspace import Workspace

    comp = Competition.load(csv_multiclass(tmp_path / "mc"))
    p = np.full((8, 4), 0.25)
    p[5] = [0.7, 0.1, 0.1, 0.2]
    with pytest.raises(DataError, match="'TEST_005' has probabilities summing to 1.1"):
        write_submission(Workspace(workspace), submission_frame(p, comp), comp, hand_sidecar("bad"))
    assert not (workspace / "submissions" / "bad.csv").exists()


def test_balanced_class_weights_are_inverse_class_counts(tmp_path):
    from types import SimpleNamespace

    from ensemble.commands.finetune import FinetuneOptions, _class_weights

    comp = Competition.load(csv_multiclass(tmp_path / "mc"))
    targets = np.eye(4)[[0] * 6 + [1] * 2 + [2] * 2 + [3] * 2]
    data = SimpleNamespace(targets=targets, train_idx=np.arange(12))
    ctx = SimpleNamespace(comp=comp, opts=FinetuneOptions(model="logmel-cnn", class_weight="balanced"))
    assert _class_weights(ctx, data) == pytest.approx((0.5, 1.5, 1.5, 1.5))
    ctx.opts = FinetuneOptions(model="logmel-cnn")
    assert _class_weights(ctx, data) is None


@pytest.mark.parametrize("method", ["mean", "logit", "single"])
def test_runs_without_oof_are_blended_as_the_task_says(method):
    """No OOF predictions: the blender is fitted on the test tensor, and still for the task's kind (a
    multi-label `logit` of a 3-class row gave rows summing to 0.59–0.90)."""
    P, _, _ = runs_tensor(60)
    result = stack(None, None, None, P, method=method, calibrate="none", labels=CLASSES, task=MULTICLASS)
    assert np.abs(result.test.sum(axis=1) - 1).max() < 1e-9
    assert result.recipe.state.blender.get("task") == "multiclass"


def test_auto_keeps_no_temperature_for_a_calibrated_multiclass_run():
    """Rows drawn from the run's own probabilities are calibrated: a fitted temperature cannot credibly
    help, so `auto` keeps T = 1 (none) and says so; an over-confident run gets one."""
    from ensemble.stack.multiclass import fit_temperature

    rng = np.random.default_rng(3)
    logits = rng.normal(0, 1.5, (1500, 4))
    S = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.eye(4)[[rng.choice(4, p=row) for row in S]]
    folds, scorer = np.arange(1500) % 4, get_scorer("logloss", MULTICLASS)
    cal, note = fit_temperature(S, y, folds, "auto", None, scorer)
    assert cal.name == "none" and note["rule"].startswith("none:") and note["gain"]["lo"] <= 0
    sharp = np.exp(3 * logits) / np.exp(3 * logits).sum(axis=1, keepdims=True)
    cal, note = fit_temperature(sharp, y, folds, "auto", None, scorer)
    assert cal.name == "temperature" and note["gain"]["lo"] > 0
    # the reason it is kept is printed with the numbers that decided it: the gain, its interval and the metric
    g = note["gain"]
    assert note["rule"] == (f"temperature: gain over none {g['gain']:+.4f} [{g['lo']:+.4f}, {g['hi']:+.4f}] by "
                            f"cross-validated {scorer.name}, interval above zero")


def _conditions(n: int, share_noisy: float, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of a clean condition (softmax of half the exact logits: under-confident) and a noisy one
    (twice the exact logits: over-confident); they want temperatures far apart."""
    y = np.eye(3)[rng.integers(0, 3, n)]
    noisy = rng.random(n) < share_noisy
    z = 2 * y + rng.standard_normal(y.shape)
    z = np.where(noisy[:, None], 4 * z, z)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return y, e / e.sum(axis=1, keepdims=True), noisy


def test_density_ratio_weights_reach_the_multiclass_temperature():
    """Test-like rows 10 % noisy, the test 90 %: weighted by the density ratio, the temperature is the
    noisy condition's (above 1), and the test score is better than the unweighted fit's."""
    rng = np.random.default_rng(10)
    y_tl, p_tl, noisy = _conditions(3000, 0.1, rng)
    w = np.where(noisy, 0.9 / 0.1, 0.1 / 0.9)
    y_test, p_test, _ = _conditions(3000, 0.9, rng)
    y_oof, p_oof, _ = _conditions(600, 0.1, rng)
    kw = dict(method="single", calibrate="temperature", labels=["a", "b", "c"], n_boot=5, task=MULTICLASS,
              metric="logloss", P_tl=p_tl[:, None, :], y_tl=y_tl, folds_tl=np.arange(3000) % 4)
    args = (p_oof[:, None, :], y_oof, np.arange(600) % 4, p_test[:, None, :])
    plain, weighted = stack(*args, **kw), stack(*args, w_tl=w, **kw)
    t_plain = plain.recipe.calibrators[0].params["temperature"]
    t_weighted = weighted.recipe.calibrators[0].params["temperature"]
    assert t_plain < 1.0 < 1.5 < t_weighted
    scorer = get_scorer("logloss", MULTICLASS)
    assert scorer(y_test, weighted.test) < scorer(y_test, plain.test) - 0.05


def test_a_multiclass_workspace_builds_no_feature_set_and_no_test_like_set(tmp_path):
    """`ens features` and `ens testlike check` used to build a test-like set for a multiclass task (whose
    clips cannot mix voices), and a feature set no multiclass stack can take."""
    data = Path(__file__).resolve().parents[1] / "examples" / "voices-src-sample"
    ws = tmp_path / "ws"
    line = one_line_error(ens("features", "vad", "--data", data, "-w", ws))
    assert "a multiclass stack takes none" in line
    line = one_line_error(ens("testlike", "check", "--data", data, "-w", ws))
    assert "ens testlike check: a multiclass task has no test-like set" in line
    assert not (ws / "models" / "testlike.parquet").exists() and not (ws / "models" / "features").exists()
