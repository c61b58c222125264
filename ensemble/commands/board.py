"""The leaderboard of a workspace: runs and submissions with CV parts and recorded public/private scores."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ensemble.artifacts.runs import RUN_MANIFEST_FILE, partial_runs, read_manifest
from ensemble.artifacts.submission import read_sidecar
from ensemble.artifacts.workspace import Workspace
from ensemble.task import task_named

if TYPE_CHECKING:
    from ensemble.metrics.scorer import Scorer

COLUMNS = ["rank", "name", "kind", "method", "cv", "auc", "brier", "ece", "cv_testlike", "public", "private", "delta",
           "in_sample", "gap", "gain", "gain_lo", "gain_hi"]
DETAIL = ["in_sample", "gap", "gain", "gain_lo", "gain_hi"]  # in json/csv/md; too wide for the table
# the header a table shows for a short column name: the board's and the stack comparisons', in the terminal and the report
COLUMN_HEADERS = {"rank": "#", "cv_testlike": "t-like", "public": "pub", "private": "priv", "in-smp": "in-sample",
                  "s": "sec"}


def _row(name: str, kind: str, method: str, metrics: dict, board: dict) -> dict:
    cv = metrics.get("cv") or {}
    testlike = metrics.get("cv_testlike") or {}
    gain = metrics.get("gain") or {}
    return {
        "name": name, "kind": kind, "method": method,
        "cv": cv.get("score"), "auc": cv.get("auc"), "brier": cv.get("brier"), "ece": cv.get("ece"),
        "cv_testlike": testlike.get("score"),
        "public": board.get("public"), "private": board.get("private"),
        "in_sample": (metrics.get("in_sample") or {}).get("score"), "gap": metrics.get("optimism"),
        "gain": gain.get("gain"), "gain_lo": gain.get("lo"), "gain_hi": gain.get("hi"),
    }


def _metric(ws: Workspace, metric: str | None) -> Scorer:
    """The board's scorer: `metric` (remembered), else the workspace's, else the competition metric of a
    multi-label workspace (also when its folder moved: runs and submissions recorded their scores in it)."""
    from ensemble.artifacts.competition import Competition
    from ensemble.errors import EnsError
    from ensemble.metrics.scorer import COMPETITION, get_scorer

    stored_task = ws.settings().get("task")
    if metric is None and "metric" not in ws.settings() and not (stored_task and task_named(stored_task).exclusive):
        try:
            if "data" not in ws.settings() or not Competition.load(ws.data_dir()).task.exclusive:
                return COMPETITION
        except (EnsError, OSError):  # the folder moved: rank by what runs and submissions recorded
            return COMPETITION
    comp = Competition.load(ws.data_dir(), ws.settings().get("task"))
    return get_scorer(ws.metric(comp.task, metric), comp.task)


def recorded_in(scorer: Scorer) -> bool:
    """Whether runs and submissions recorded their scores in `scorer` (the competition metric, multi-label):
    the board then ranks by those records instead of rescoring every OOF file."""
    from ensemble.metrics.scorer import COMPETITION

    return scorer is COMPETITION


def _rescore(ws: Workspace, name: str, scorer, truth: pd.DataFrame | None) -> dict | None:
    """A run's CV on `scorer`, from its OOF file and the folds' targets (None: no OOF)."""
    from ensemble.artifacts.runs import load_run
    from ensemble.metrics.frames import multiclass_scores

    run = load_run(ws, name)
    if not run.has_oof or truth is None:
        return None
    labels = run.labels
    if scorer.task.exclusive:
        return multiclass_scores(run.oof(), truth, labels, scorer)
    p = run.oof().set_index("id").loc[truth["id"], labels].to_numpy(dtype=np.float64)
    return {"score": scorer(truth[labels].to_numpy(dtype=np.float64), p)}


def board_frame(ws: Workspace, metric: str | None = None) -> pd.DataFrame:
    """One row per run and submission, best CV first, with rank and delta to best. Ranked by the
    workspace's metric (`metric`, else ens.toml's; lower is better unless the metric says otherwise):
    runs are rescored from their OOF, submissions show the nested score they were stacked with when
    that was the same metric (else none: restack them with `--metric`)."""
    scorer = _metric(ws, metric)
    if not recorded_in(scorer):
        return _metric_frame(ws, scorer)
    rows = []
    for name in ws.run_names():
        manifest = read_manifest(ws.run_dir(name) / RUN_MANIFEST_FILE)
        rows.append(_row(name, "run", manifest.model_ref or manifest.kind, manifest.metrics, {}))
    for name in ws.submission_names():
        sidecar = read_sidecar(ws, name)
        rows.append(_row(name, "submission", sidecar.recipe.method, sidecar.metrics, sidecar.leaderboard))
    for partial in partial_runs(ws):  # unranked: no scores until every fold is done
        rows.append(_row(partial.name, "partial", partial.model or "?", {}, {}))
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("rank", "delta")])
    if frame.empty:
        return frame.reindex(columns=COLUMNS)
    # the test-like score is the one to trust where it exists; else the clean CV score
    key = frame["cv_testlike"].where(frame["cv_testlike"].notna(), frame["cv"]).astype(float)
    frame = frame.assign(_key=key).sort_values(["_key", "name"], na_position="last", kind="stable")
    frame["rank"] = frame["_key"].rank(method="min").astype("Int64")
    frame["delta"] = frame["_key"] - frame["_key"].min()
    frame = frame.drop(columns="_key").reindex(columns=COLUMNS).reset_index(drop=True)
    frame.attrs["partial"] = [f"partial run {p.name}: {p.progress()}; finish: {p.finish_hint()}" for p in partial_runs(ws)]
    return frame


def _metric_frame(ws: Workspace, scorer) -> pd.DataFrame:
    """`board_frame` ranked by another metric than the competition's (multiclass: with its usual numbers)."""
    from ensemble.artifacts.folds import load_folds

    truth = load_folds(ws) if (ws.models_dir / "folds.parquet").is_file() else None
    parts = list(scorer.task.usual_scores)
    rows = []
    for name in ws.run_names():
        manifest = read_manifest(ws.run_dir(name) / RUN_MANIFEST_FILE)
        cv = _rescore(ws, name, scorer, truth)
        rows.append(_row(name, "run", manifest.model_ref or manifest.kind, {"cv": cv} if cv else {}, {})
                    | {k: (cv or {}).get(k) for k in parts})
    for name in ws.submission_names():
        sidecar = read_sidecar(ws, name)
        same = (sidecar.recipe.metric or "competition") in (scorer.name, *(["dacon-fakevoice"] if scorer.name == "competition" else []))
        cv = (sidecar.cv or {}) if same else {}
        rows.append(_row(name, "submission", sidecar.recipe.method, sidecar.metrics if same else {},
                         sidecar.leaderboard) | {k: cv.get(k) for k in parts})
    for partial in partial_runs(ws):
        rows.append(_row(partial.name, "partial", partial.model or "?", {}, {}))
    columns = [c for c in COLUMNS if c not in ("rank", "delta")] + parts
    frame = pd.DataFrame(rows, columns=columns)
    if frame.empty:
        return frame.reindex(columns=COLUMNS + parts)
    key = scorer.sign * frame["cv_testlike"].where(frame["cv_testlike"].notna(), frame["cv"]).astype(float)
    frame = frame.assign(_key=key).sort_values(["_key", "name"], na_position="last", kind="stable")
    frame["rank"] = frame["_key"].rank(method="min").astype("Int64")
    frame["delta"] = scorer.sign * (frame["_key"] - frame["_key"].min()) + 0.0
    frame = frame.drop(columns="_key").reindex(columns=COLUMNS + parts).reset_index(drop=True)
    frame.attrs["partial"] = [f"partial run {p.name}: {p.progress()}; finish: {p.finish_hint()}" for p in partial_runs(ws)]
    frame.attrs["metric"] = f"{scorer.name} ({'higher' if scorer.greater_is_better else 'lower'} is better)"
    return frame


def ranked_by(frame: pd.DataFrame) -> str:
    """Which score ranks the board's rows: test-like CV, clean CV, or test-like where present (else clean)."""
    scored = frame[frame["kind"] != "partial"]
    has_tl, has_cv = scored["cv_testlike"].notna(), scored["cv"].notna()
    if len(scored) and has_tl.all():
        return "test-like CV"
    if not has_tl.any():
        return "clean CV"
    clean = ", ".join(scored.loc[~has_tl & has_cv, "name"].astype(str))
    return f"test-like CV where a row has it, else clean CV ({clean})"


def board_legend(frame: pd.DataFrame) -> list[str]:
    """What the board's columns mean, in words, and which one ranks the rows (lower is better but for AUC)."""
    if "metric" in frame.attrs:
        return [f"# ranks by {ranked_by(frame)} on {frame.attrs['metric']}; delta: that score minus #1's. Runs are "
                "scored from their OOF; a submission stacked with another metric has no score here (restack it "
                "with --metric)", *frame.attrs.get("partial", [])]
    lines = [f"# ranks by {ranked_by(frame)}; delta: that score minus #1's. Lower is better in every column but auc.",
             "cv: nested CV score on the clean train rows (auc, brier, ece: its parts); t-like: the same on the "
             "simulated test-like clips; pub, priv: leaderboard scores recorded with `ens lb`."]
    return lines + list(frame.attrs.get("partial", []))  # a line per partial run: its folds, how to finish it


def cv_public_correlation(frame: pd.DataFrame) -> dict[str, float] | None:
    """Pearson and Spearman correlation of CV vs public score, once three or more submissions have both."""
    both = frame[(frame["kind"] == "submission") & frame["cv"].notna() & frame["public"].notna()]
    if len(both) < 3:
        return None
    cv, public = both["cv"].astype(float), both["public"].astype(float)
    if cv.nunique() < 2 or public.nunique() < 2:
        return None
    return {"n": int(len(both)), "pearson": float(np.corrcoef(cv, public)[0, 1]),
            "spearman": float(cv.rank().corr(public.rank()))}


def correlation_sentence(correlation: dict) -> str:
    """CV vs public correlation, and what it says about trusting CV to pick the next submission."""
    r = correlation["spearman"]
    verdict = ("CV orders submissions as the leaderboard does: trust it to choose" if r >= 0.8 else
               "CV and the leaderboard disagree: trust CV less, and look at test-like CV" if r < 0.4 else
               "CV roughly follows the leaderboard")
    return (f"CV vs public over {correlation['n']} submissions: Pearson {correlation['pearson']:.3f}, "
            f"Spearman {correlation['spearman']:.3f} ({verdict})")
