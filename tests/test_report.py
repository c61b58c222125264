"""`ens report`: figures and page from a workspace built through import, stack, submission and leaderboard."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import LABELS, write_predictions
from ensemble.commands.stack import run_stack
from ensemble.stack.request import StackRequest
from ensemble.artifacts.competition import Competition
from ensemble.errors import EnsError, ExistsError
from ensemble.artifacts.folds import load_folds
from ensemble.commands.import_ import import_run
from ensemble.artifacts.io import write_parquet
from ensemble.commands.report import fold_scores, logit_correlation, write_report
from ensemble.metrics.dacon import calibration_bins
from ensemble.plots import quantile_bins
from ensemble.artifacts.runs import TESTLIKE_OOF_FILE, load_run, write_run_file
from ensemble.artifacts.testlike_set import TESTLIKE_FILE as CLIPS_FILE
from ensemble.artifacts.submission import read_sidecar, submission_frame, write_submission
from ensemble.commands.lb import record_leaderboard
from ensemble.artifacts.workspace import Workspace

N_FOLDS = 4


def _predictions(y: np.ndarray, strength: float, seed: int) -> np.ndarray:
    """Noisy probabilities that rank the targets better the larger `strength` is."""
    rng = np.random.default_rng(seed)
    z = strength * (2 * y - 1) + rng.normal(size=y.shape)
    return 1 / (1 + np.exp(-z))


@pytest.fixture
def built(tmp_path: Path, csv_competition: Path, workspace: Path) -> Workspace:
    """Three imported runs with OOF (one also with test-like OOF), two submissions, leaderboard scores."""
    ws = Workspace.resolve(workspace)
    comp = Competition.load(ws.data_dir(csv_competition))
    train = pd.read_csv(csv_competition / "train.csv")["id"].tolist()
    fold = (np.arange(len(train)) // 2) % N_FOLDS  # both classes in every fold
    y = comp.targets
    test_ids = comp.test_ids.tolist()
    for k, (name, strength) in enumerate([("w2v", 2.0), ("cnn", 1.0), ("hubert", 0.5)]):
        oof = write_predictions(tmp_path / f"{name}_oof.csv", train, _predictions(y, strength, k), fold)
        test = write_predictions(tmp_path / f"{name}_test.csv", test_ids, np.random.default_rng(k).random((len(test_ids), 2)))
        import_run(ws, comp, name, test, oof)
    # test-like OOF for one run, written like `ens oof` writes it
    clips = pd.DataFrame({"id": [f"TL_{i:03d}" for i in range(24)], "fold": np.arange(24) % N_FOLDS})
    y_tl = np.random.default_rng(9).integers(0, 2, (24, 2))
    for j, label in enumerate(LABELS):
        clips[label] = y_tl[:, j]
    write_parquet(clips.assign(recipe="{}"), ws.models_dir / CLIPS_FILE)
    tl = clips[["id", "fold"]].copy()
    tl[LABELS] = _predictions(y_tl.astype(float), 1.0, 5)
    write_run_file(tl, ws.run_dir("w2v"), TESTLIKE_OOF_FILE)
    for name, method, runs, public, private in [("blend-mean", "mean", ["w2v", "cnn"], 0.21, 0.23),
                                                ("blend-logit", "logit", ["w2v", "cnn", "hubert"], 0.19, None)]:
        run_stack(ws, comp, StackRequest(runs=tuple(runs), method=method, name=name))
        record_leaderboard(ws, name, public, private)
    return ws


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_report_writes_readable_figures_and_a_page_linking_each(built: Workspace):
    out = write_report(built, built.root / "report")
    assert out == built.root / "report"
    figures = sorted(p.name for p in out.glob("*.png"))
    assert figures == sorted([
        "reliability-run-w2v.png", "reliability-run-cnn.png", "reliability-run-hubert.png",
        "reliability-sub-blend-mean.png", "reliability-sub-blend-logit.png",
        "correlation.png", "fold-scores.png", "cv-vs-leaderboard.png"])
    for name in figures:
        width, height = png_size(out / name)
        assert 400 <= width <= 2500 and 300 <= height <= 1500, (name, width, height)
    md, page = (out / "index.md").read_text(), (out / "index.html").read_text()
    assert sorted(re.findall(r"\]\(([^)]+\.png)\)", md)) == figures
    assert sorted(set(re.findall(r'src="([^"]+\.png)"', page))) == figures
    assert "test-like clips (w2v)" in md and "reproduces its CSV" in md
    # nothing left behind by the staging folder
    assert [p.name for p in built.root.iterdir() if p.name.startswith(".")] == []


def test_report_of_chosen_runs_without_leaderboard_scores_says_so(tmp_path, csv_competition, workspace):
    ws = Workspace.resolve(workspace)
    comp = Competition.load(ws.data_dir(csv_competition))
    train = comp.train["id"].tolist()
    for k, name in enumerate(["a", "b"]):
        oof = write_predictions(tmp_path / f"{name}.csv", train, _predictions(comp.targets, 1.0, k), (np.arange(40) // 2) % 2)
        test = write_predictions(tmp_path / f"{name}_t.csv", comp.test_ids.tolist(), np.full((12, 2), 0.5))
        import_run(ws, comp, name, test, oof)
    out = write_report(ws, tmp_path / "r", runs=["a"])
    assert sorted(p.name for p in out.glob("*.png")) == ["fold-scores.png", "reliability-run-a.png"]
    md = (out / "index.md").read_text()
    assert "No submission has a public leaderboard score" in md and "One run only" in md


def test_report_replaces_an_earlier_report_but_never_another_folder(built: Workspace, tmp_path: Path):
    out = write_report(built, tmp_path / "r", restack=False)
    (out / "stale.png").write_bytes(b"old")
    write_report(built, out, restack=False)
    assert not (out / "stale.png").exists() and (out / "index.html").is_file()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(ExistsError, match="not an ens report"):
        write_report(built, other, restack=False)
    assert (other / "mine.txt").read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (write_report(built, empty, restack=False) / "index.md").is_file()


def test_report_without_runs_is_a_clear_error(workspace):
    with pytest.raises(EnsError, match="no runs with OOF predictions"):
        write_report(Workspace.resolve(workspace), workspace / "report")


def test_report_data_matches_numpy(built: Workspace):
    folds = load_folds(built)
    runs = [load_run(built, n) for n in ("w2v", "cnn", "hubert")]
    oof = np.stack([r.oof().set_index("id").loc[folds["id"], LABELS].to_numpy() for r in runs], axis=1)
    corr = logit_correlation(oof)
    z = np.log(oof) - np.log1p(-oof)
    for j in range(len(LABELS)):
        np.testing.assert_allclose(corr[j], np.corrcoef(z[:, :, j].T), atol=1e-12)
    assert fold_scores(runs[0]) == [f.score for f in runs[0].manifest.metrics.per_fold]
    assert len(fold_scores(runs[0])) == N_FOLDS


def test_calibration_bins_follow_the_metric_bins():
    p = np.array([0.05, 0.1, 0.15, 0.55, 0.95, 1.0])
    y = np.array([0, 1, 0, 1, 1, 1])
    mean_p, frac, count = calibration_bins(y, p)
    # 0.1 sits on an inner edge: the metric's calibration bins put it in the lower bin
    np.testing.assert_allclose(mean_p, [0.075, 0.15, 0.55, 0.975])
    np.testing.assert_allclose(frac, [0.5, 0.0, 1.0, 1.0])
    assert count.tolist() == [2, 1, 1, 2]


def test_quantile_bins_hold_equal_counts_in_prediction_order():
    p = np.linspace(0.4, 0.6, 20)
    y = (np.arange(20) >= 10).astype(float)
    mean_p, frac = quantile_bins(y, p)
    np.testing.assert_allclose(mean_p, p.reshape(10, 2).mean(axis=1))
    assert frac.tolist() == [0.0] * 5 + [1.0] * 5


def test_a_submission_its_recipe_does_not_reproduce_is_named_not_drawn(built: Workspace):
    comp = Competition.load(built.data_dir())
    edited = submission_frame(np.full((len(comp.test_ids), 2), 0.3), comp)
    write_submission(built, edited, comp, read_sidecar(built, "blend-mean"), force=True)
    out = write_report(built, built.root / "report")
    assert not (out / "reliability-sub-blend-mean.png").exists()
    assert (out / "reliability-sub-blend-logit.png").is_file()
    assert "'blend-mean': re-running its recipe does not reproduce its CSV" in (out / "index.md").read_text()


def test_a_submission_stacked_on_another_metric_re_runs_on_its_own(built: Workspace):
    """The restack takes the recipe's metric, not the workspace's: `--calibrate auto` keeps a calibrator
    only where it helps the metric, so the CSV reproduces only with the metric it was made with."""
    from ensemble.commands.report import stacked_series

    comp = Competition.load(built.data_dir())
    request = StackRequest(runs=("w2v", "cnn", "hubert"), method="logit", metric="auc", name="logit-auc")
    other = run_stack(built, comp, replace(request, metric=None, write=False)).result.test
    assert not np.allclose(run_stack(built, comp, request).result.test, other)  # the metric matters here
    assert [s.name for s in stacked_series(built, "logit-auc", read_sidecar(built, "logit-auc"))]


def test_report_tells_progress_of_the_restacks(built: Workspace, tmp_path: Path):
    events: list[dict] = []
    write_report(built, tmp_path / "r", runs=["cnn", "w2v"], progress=events.append)
    # only blend-mean was stacked from these two runs alone
    assert events == [{"stage": "report_restack", "done": 0, "total": 1}, {"stage": "report_restack", "done": 1, "total": 1}]
    assert (tmp_path / "r" / "reliability-sub-blend-mean.png").is_file()
    assert not (tmp_path / "r" / "reliability-sub-blend-logit.png").exists()


# ---------------------------------------------------------------- the page: tables, recipes, a real browser

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if p and Path(p).is_file()), None)
PROBE = """<script>
window.addEventListener('load', () => {
  for (const img of document.images) img.setAttribute('data-natural', img.naturalWidth + 'x' + img.naturalHeight);
  document.body.setAttribute('data-rows', [...document.querySelectorAll('table')].map(
    t => t.querySelectorAll('tbody tr').length).join(','));
});
</script>"""


def _with_auto_submission(ws: Workspace) -> None:
    """A submission written by the decision rule, so the page has a comparison table to show."""
    comp = Competition.load(ws.data_dir())
    run_stack(ws, comp, StackRequest(runs=("w2v", "cnn", "hubert"), method="auto", name="picked"))


def test_report_page_holds_the_board_the_recipes_and_the_comparison(built: Workspace, tmp_path: Path):
    from ensemble.commands.board import board_frame, board_view

    _with_auto_submission(built)
    out = write_report(built, tmp_path / "r", restack=False)
    page = (out / "index.html").read_text()
    tables = re.findall(r"<table>.*?</table>", page, flags=re.S)
    board = board_view(board_frame(built))
    assert len(tables) == 2  # the board, and the comparison behind 'picked'
    assert tables[0].count("<tr>") == len(board) + 1 and all(f">{n}<" in tables[0] for n in board["name"])
    assert "# ranks by" in page and "cv: nested CV score on the clean train rows" in page  # the board's legend
    assert "chosen by the decision rule:" in page and "picked" in board["name"].str.cat()  # the pick, with its reason
    sidecar = json.loads((built.submissions_dir / "picked.json").read_text())
    chosen = sidecar["recipe"]["decision"]["chosen"]
    assert tables[1].count("<tr>") == len(sidecar["comparison"]) + 1 and f"* {chosen}" in tables[1]
    assert "gain: best single run" in page and html_text(f"decision: {sidecar['recipe']['decision']['rule']}") in page
    # each submission's recipe in words: weights of blend-logit's runs are not in its recipe (a plain mean
    # of logits), the calibrator per label is
    logit_recipe = json.loads((built.submissions_dir / "blend-logit.json").read_text())["recipe"]
    for cal in logit_recipe["calibrators"]:
        assert html_text(f"calibrator, {cal['label']}: {cal['calibrator']}") in page
    assert "the mean of the runs&#x27; logits: w2v, cnn, hubert" in page
    assert "public leaderboard 0.19" in page


def html_text(text: str) -> str:
    import html

    return html.escape(text)


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)")
def test_report_page_renders_in_headless_chromium(built: Workspace, tmp_path: Path):
    """The page opens from disk in a real browser: every image decodes at its PNG size, every table has its
    rows, and a screenshot shows more than a blank page."""
    import subprocess

    from matplotlib.image import imread

    _with_auto_submission(built)
    out = write_report(built, tmp_path / "r", restack=True)
    probe = out / "probe.html"  # the page plus a script that records what loaded; the report stays as written
    probe.write_text((out / "index.html").read_text().replace("</body>", PROBE + "</body>"))
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files"]
    dom = subprocess.run([*flags, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    images = re.findall(r'<img src="([^"]+)"[^>]*data-natural="(\d+)x(\d+)"', dom)
    expected = sorted(p.name for p in out.glob("*.png"))
    assert sorted(src for src, _, _ in images) == expected, dom[-2000:]
    for src, w, h in images:
        assert (int(w), int(h)) == png_size(out / src), src  # decoded by the browser at the file's size
    rows = re.search(r'data-rows="([\d,]+)"', dom).group(1).split(",")
    assert len(rows) == 2 and all(int(n) > 0 for n in rows)
    shot = tmp_path / "report.png"
    subprocess.run([*flags, "--window-size=1200,2400", f"--screenshot={shot}", (out / "index.html").as_uri()],
                   capture_output=True, timeout=120)
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1200)
    inked = (pixels.mean(axis=2) < 0.9).mean()  # text, tables and figures, not a white page
    assert inked > 0.02, inked
    keep = os.environ.get("ENS_REPORT_SCREENSHOT")  # set to look at it
    if keep:
        shutil.copy(shot, keep)


def test_cv_vs_leaderboard_axes_span_the_submissions_drawn(tmp_path: Path, monkeypatch):
    """A submission without a leaderboard score is not drawn, so it does not stretch the CV axis."""
    import ensemble.plots as plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    subs = pd.DataFrame({"name": ["a", "b", "c"], "cv": [0.010, 0.015, 0.35], "cv_testlike": [np.nan] * 3,
                         "public": [0.012, 0.016, np.nan], "private": [np.nan] * 3}, index=["a", "b", "c"])
    plots.plot_cv_vs_leaderboard(tmp_path / "x.png", subs)
    (ax,) = figures[0].axes
    lo, hi = ax.get_xlim()
    assert lo <= 0.010 and 0.015 <= hi < 0.05, (lo, hi)
    corr = np.array([[[1.0, -0.9], [-0.9, 1.0]]])
    plots.plot_correlation(tmp_path / "c.png", ["a", "b"], ["fake"], corr)
    title = figures[1]._suptitle.get_text()
    assert "negative" in title and "swapped or inverted" in title  # not "lower = more to gain"
