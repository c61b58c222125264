"""The leaderboard of a workspace: runs and submissions with CV parts and recorded public/private scores."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ensemble.artifacts.records import CVScores, LeaderboardRecord, ScoreRecord
from ensemble.artifacts.runs import RUN_MANIFEST_FILE, load_run, partial_runs, read_manifest
from ensemble.artifacts.submission import read_sidecar
from ensemble.artifacts.workspace import Workspace
from ensemble.task import task_named

if TYPE_CHECKING:
    from ensemble.metrics.scorer import Scorer

COLUMNS = ["rank", "name", "kind", "method", "cv", "auc", "brier", "ece", "cv_testlike", "public", "private", "delta",
           "in_sample", "gap", "gain", "gain_lo", "gain_hi", "gain_level", "written_as", "pick"]
# in json/csv/md; too wide for the table (`written_as` and `pick` are shown in the name and rank cells)
DETAIL = ["in_sample", "gap", "gain", "gain_lo", "gain_hi", "gain_level", "written_as", "pick"]
# the header a table shows for a short column name: the board's and the stack comparisons', in the terminal and the report
COLUMN_HEADERS = {"rank": "#", "cv_testlike": "t-like", "public": "pub", "private": "priv", "in-smp": "in-sample",
                  "s": "sec"}


def _row(name: str, kind: str, method: str, metrics: CVScores, board: LeaderboardRecord) -> dict:
    cv, testlike, gain = metrics.cv or ScoreRecord(), metrics.cv_testlike or ScoreRecord(), metrics.gain
    return {
        "name": name, "kind": kind, "method": method,
        "cv": cv.score, "auc": cv.auc, "brier": cv.brier, "ece": cv.ece,
        "cv_testlike": testlike.score,
        "public": board.public, "private": board.private,
        "in_sample": metrics.in_sample.score if metrics.in_sample else None, "gap": metrics.optimism,
        "gain": gain.gain if gain else None, "gain_lo": gain.lo if gain else None, "gain_hi": gain.hi if gain else None,
        "gain_level": gain.level if gain else None,
        "written_as": None, "pick": None,
    }


def _submission_row(name: str, sidecar, metrics: CVScores) -> dict:
    """A submission's row, with the decision rule's reason where the rule chose what it holds."""
    row = _row(name, "submission", sidecar.recipe.method, metrics, sidecar.leaderboard)
    row["_run"] = single_run_of(sidecar.recipe)  # for `_fold_single_runs`; not a column
    decision = sidecar.recipe.decision
    if decision:
        row["pick"] = f"chosen by the decision rule: {decision.rule or decision.chosen}"
    return row


def single_run_of(recipe) -> str | None:
    """The run a submission is, unchanged (method single, no calibrator, no prior): None for anything else."""
    k = recipe.chosen_run
    if k is None or recipe.meta_features:
        return None
    if any(c.calibrator != "none" for c in recipe.calibrators):
        return None
    if recipe.prior is not None and recipe.prior.adapted:
        return None
    names = recipe.run_names
    return names[k] if 0 <= k < len(names) else None


def trusted_testlike(ws: Workspace, names: list[str], scorer=None) -> tuple[dict[str, float], str]:
    """Each run's score on the test-like clips as the decision rule scores a run (its raw candidate): the
    same rows, weighted by the same density ratios when the stacker uses them; and how they are weighted.

    A run's recorded test-like score is unweighted; beside nested scores of submissions (weighted) it would
    rank one prediction two ways. Runs whose test-like predictions do not match the clips get none."""
    from ensemble.artifacts.testlike_set import load_testlike, testlike_weights
    from ensemble.metrics.scorer import COMPETITION
    from ensemble.stack.inputs import usable_weights

    clips = load_testlike(ws)
    if clips is None:
        return {}, "none"
    scorer = scorer or COMPETITION
    weights, weighting = usable_weights(testlike_weights(clips))
    ids = clips["id"].astype(str)
    out = {}
    for name in names:
        run = load_run(ws, name)
        if not run.has_testlike_oof:
            continue
        frame = run.oof_testlike()
        frame = frame.assign(id=frame["id"].astype(str))
        if len(frame) != len(ids) or set(frame["id"]) != set(ids):
            continue  # predicted other clips: no comparable score
        labels = run.labels
        p = frame.set_index("id").loc[ids, labels].to_numpy(dtype=np.float64)
        out[name] = float(scorer.score_parts(clips[labels].to_numpy(dtype=np.float64), p, weights).score)
    return out, weighting


def _fold_single_runs(rows: list[dict]) -> list[dict]:
    """A submission that is one run unchanged is shown as that run (one row, its name beside the run's):
    the same predictions ranked twice, on two bases, read as two results."""
    runs = {r["name"]: r for r in rows if r["kind"] == "run"}
    out = []
    for row in rows:
        run = row.get("_run")
        target = runs.get(run) if run is not None else None
        if target is None:
            out.append(row)
            continue
        if target["written_as"] is None:
            target.update(written_as=row["name"], public=row["public"], private=row["private"], pick=row["pick"])
            continue
        target["written_as"] += f", {row['name']}"  # another submission of the same run: same predictions
        for key in ("public", "private", "pick"):
            if target[key] is None or (isinstance(target[key], float) and np.isnan(target[key])):
                target[key] = row[key]
    return out


def trusted_basis(frame: pd.DataFrame) -> str:
    """The score every row is ranked by: the one the decision rule trusts, test-like CV where the workspace
    has it (any row), else clean CV. Rows without it are listed apart, unranked."""
    scored = frame[frame["kind"] != "partial"]
    return "cv_testlike" if scored["cv_testlike"].notna().any() else "cv"


def _rank(frame: pd.DataFrame, sign: float = 1.0) -> pd.DataFrame:
    """Rank and delta on the trusted basis; rows lacking it after the ranked ones (by clean CV), unranked."""
    basis = trusted_basis(frame)
    key = sign * frame[basis].astype(float)
    apart = sign * frame["cv"].astype(float)
    frame = frame.assign(_key=key, _apart=key.isna() & frame["kind"].ne("partial"), _cv=apart)
    frame = frame.sort_values(["_key", "_cv", "name"], na_position="last", kind="stable")
    frame = pd.concat([frame[frame["_key"].notna()], frame[frame["_apart"]],
                       frame[frame["_key"].isna() & ~frame["_apart"]]])
    frame["rank"] = frame["_key"].rank(method="min").astype("Int64")
    frame["delta"] = sign * (frame["_key"] - frame["_key"].min()) + 0.0
    frame.attrs["basis"] = basis
    frame.attrs["apart"] = frame.loc[frame["_apart"], "name"].astype(str).tolist()
    return frame.drop(columns=["_key", "_apart", "_cv"])


def _metric(ws: Workspace, metric: str | None) -> Scorer:
    """The board's scorer: `metric` (remembered), else the workspace's, else its task's default; where that
    default is what runs and submissions recorded their scores in (`recorded_in`), it is used without the
    competition folder (a multi-label workspace whose folder moved, or that names none, ranks by it)."""
    from ensemble.artifacts.competition import Competition
    from ensemble.errors import EnsError
    from ensemble.metrics.scorer import get_scorer
    from ensemble.task import MULTILABEL

    stored_task = ws.settings().get("task")
    if metric is None and "metric" not in ws.settings():
        task = task_named(stored_task) if stored_task else MULTILABEL
        try:
            if not stored_task and "data" in ws.settings():
                task = Competition.load(ws.data_dir()).task
        except (EnsError, OSError):  # the folder moved: rank by what runs and submissions recorded
            pass
        default = get_scorer(task.default_metric, task)
        if recorded_in(default):
            return default
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
    from ensemble.metrics.frames import frame_scores

    run = load_run(ws, name)
    if not run.has_oof or truth is None:
        return None
    return frame_scores(run.oof(), truth, run.labels, scorer)


def changed_runs(ws: Workspace) -> dict[str, str]:
    """Runs whose files no longer match their run.json (edited, replaced, missing, unreadable), each with its
    one-line reason: listed under the board, never ranked on scores their files no longer back."""
    from ensemble.errors import EnsError

    out = {}
    for name in ws.run_names():
        try:
            load_run(ws, name).check_files()
        except EnsError as err:
            out[name] = str(err)
    return out


def _changed_lines(changed: dict[str, str]) -> list[str]:
    return [f"warning: run {name} is not listed: {why}" for name, why in changed.items()]


def board_frame(ws: Workspace, metric: str | None = None, fold: bool = True) -> pd.DataFrame:
    """One row per run and submission, ranked on one basis (`trusted_basis`), with delta to best. Ranked by
    the workspace's metric (`metric`, else ens.toml's; lower is better unless the metric says otherwise):
    runs are rescored from their OOF, submissions show the nested score they were stacked with when
    that was the same metric (else none: restack them with `--metric`). With `fold`, a submission that is
    one run unchanged is that run's row (`written_as`). Runs whose files changed since their run.json are
    left out and named in `attrs["changed"]`."""
    scorer = _metric(ws, metric)
    changed = changed_runs(ws)
    if not recorded_in(scorer):
        return _metric_frame(ws, scorer, changed, fold)
    rows = []
    names = [n for n in ws.run_names() if n not in changed]
    trusted, weighting = trusted_testlike(ws, names)
    for name in names:
        manifest = read_manifest(ws.run_dir(name) / RUN_MANIFEST_FILE)
        metrics = manifest.metrics
        if name in trusted:  # scored as the decision rule scores it, beside the submissions' nested scores
            metrics = replace(metrics, cv_testlike=ScoreRecord(score=trusted[name]))
        rows.append(_row(name, "run", manifest.model_ref or manifest.kind, metrics, LeaderboardRecord()))
    for name in ws.submission_names():
        sidecar = read_sidecar(ws, name)
        rows.append(_submission_row(name, sidecar, sidecar.metrics))
    for partial in partial_runs(ws):  # unranked: no scores until every fold is done
        rows.append(_row(partial.name, "partial", partial.model or "?", CVScores(), LeaderboardRecord()))
    rows = _fold_single_runs(rows) if fold else rows
    frame = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("rank", "delta")])
    if frame.empty:
        frame = frame.reindex(columns=COLUMNS)
        frame.attrs["changed"] = _changed_lines(changed)
        return frame
    frame = _rank(frame)
    attrs = dict(frame.attrs, weighting=weighting)
    frame = frame.reindex(columns=COLUMNS).reset_index(drop=True)
    frame.attrs.update(attrs)
    frame.attrs["partial"] = [f"partial run {p.name}: {p.progress()}; finish: {p.finish_hint()}" for p in partial_runs(ws)]
    frame.attrs["changed"] = _changed_lines(changed)
    return frame


def _metric_frame(ws: Workspace, scorer, changed: dict[str, str], fold: bool = True) -> pd.DataFrame:
    """`board_frame` ranked by another metric than the competition's (multiclass: with its usual numbers)."""
    from ensemble.artifacts.folds import load_folds

    truth = load_folds(ws) if (ws.models_dir / "folds.parquet").is_file() else None
    parts = list(scorer.task.usual_scores)
    rows = []
    for name in [n for n in ws.run_names() if n not in changed]:
        manifest = read_manifest(ws.run_dir(name) / RUN_MANIFEST_FILE)
        cv = _rescore(ws, name, scorer, truth)
        rows.append(_row(name, "run", manifest.model_ref or manifest.kind, CVScores(cv=cv), LeaderboardRecord())
                    | {k: (cv or {}).get(k) for k in parts})
    for name in ws.submission_names():
        sidecar = read_sidecar(ws, name)
        same = (sidecar.recipe.metric or "competition") in (scorer.name, *(["dacon-fakevoice"] if scorer.name == "competition" else []))
        rows.append(_submission_row(name, sidecar, sidecar.metrics if same else CVScores())
                    | {k: getattr(sidecar.cv, k, None) if same else None for k in parts})
    for partial in partial_runs(ws):
        rows.append(_row(partial.name, "partial", partial.model or "?", CVScores(), LeaderboardRecord()))
    columns = [c for c in COLUMNS if c not in ("rank", "delta")] + parts
    frame = pd.DataFrame(_fold_single_runs(rows) if fold else rows, columns=columns)
    if frame.empty:
        frame = frame.reindex(columns=COLUMNS + parts)
        frame.attrs["changed"] = _changed_lines(changed)
        return frame
    frame = _rank(frame, scorer.sign)
    attrs = dict(frame.attrs)
    frame = frame.reindex(columns=COLUMNS + parts).reset_index(drop=True)
    frame.attrs.update(attrs)
    frame.attrs["partial"] = [f"partial run {p.name}: {p.progress()}; finish: {p.finish_hint()}" for p in partial_runs(ws)]
    frame.attrs["changed"] = _changed_lines(changed)
    frame.attrs["metric_key"] = scorer.name.replace("-", "_")  # the usual score it is, shown once (as cv)
    frame.attrs["metric"] = f"{scorer.name} ({'higher' if scorer.greater_is_better else 'lower'} is better)"
    return frame


def board_view(frame: pd.DataFrame) -> pd.DataFrame:
    """The board's columns for people: the pick marked `*` beside its rank, a submission that is one run named
    beside it (`run = submission`), detail and empty part columns left out."""
    shown = frame.drop(columns=DETAIL)
    written = frame["written_as"].where(frame["written_as"].notna(), None)
    shown["name"] = [n if not isinstance(w, str) else f"{n} = {min(w.split(', '), key=len)}"  # the rest: legend
                     + (f" +{w.count(', ')}" if ", " in w else "") for n, w in zip(frame["name"], written)]
    shown["rank"] = [("–" if pd.isna(r) else str(int(r))) + ("*" if isinstance(p, str) else "")
                     for r, p in zip(frame["rank"], frame["pick"])]
    shown = shown.drop(columns=["cv_testlike"]) if shown["cv_testlike"].isna().all() else shown
    if "metric" in frame.attrs:  # parts the metric has not are left out
        shown = shown.drop(columns=[c for c in ("auc", "brier", "ece") if shown[c].isna().all()])
    return shown.drop(columns=[c for c in [frame.attrs.get("metric_key")] if c in shown.columns])  # = cv


def ranked_by(frame: pd.DataFrame) -> str:
    """Which score ranks the board's rows, in words (the one basis `trusted_basis` chose)."""
    if frame.attrs.get("basis", trusted_basis(frame)) == "cv_testlike":
        return "test-like CV (the score the decision rule trusts)"
    return "clean CV (the score the decision rule trusts: no row has test-like CV)"


def _apart_line(frame: pd.DataFrame) -> list[str]:
    apart = frame.attrs.get("apart") or []
    if not apart:
        return []
    what = "test-like CV" if frame.attrs.get("basis") == "cv_testlike" else "a CV score"
    return [f"below the line, not ranked (no {what}): {', '.join(apart)}; their clean CV is shown, not comparable"]


def _pick_lines(frame: pd.DataFrame) -> list[str]:
    """`* NAME: why` for each row the decision rule wrote; `A = S` rows explained."""
    lines = []
    for row in frame.itertuples():
        written = row.written_as if isinstance(row.written_as, str) else None
        shown = f"{row.name} = {written}" if written else row.name
        same = f" (submission {written} is run {row.name} unchanged, one row)" if written else ""
        if isinstance(row.pick, str):
            lines.append(f"* {shown}{same}: {row.pick}")
        elif written:
            lines.append(f"{shown}: submission {written} is run {row.name} unchanged, one row")
    return lines


def _weighted(frame: pd.DataFrame) -> str:
    weighting = frame.attrs.get("weighting", "none")
    return "" if weighting.startswith("none") else f", weighted as the decision rule weighs them: {weighting}"


def board_legend(frame: pd.DataFrame) -> list[str]:
    """What the board's columns mean, in words, which one score ranks the rows, the rows apart, and the
    decision rule's picks with their reasons."""
    picks = _pick_lines(frame)
    if "metric" in frame.attrs:
        return [f"# ranks by {ranked_by(frame)} on {frame.attrs['metric']}; delta: that score minus #1's. Runs are "
                "scored from their OOF; a submission stacked with another metric has no score here (restack it "
                "with --metric); –: no value", *_apart_line(frame), *picks, *frame.attrs.get("partial", [])]
    lines = [f"# ranks by {ranked_by(frame)}; delta: that score minus #1's. Lower is better in every column but auc.",
             "cv: nested CV score on the clean train rows (auc, brier, ece: its parts)"
             + ("; t-like: the same on the simulated test-like clips" + _weighted(frame)
                if frame["cv_testlike"].notna().any() else "")
             + "; pub, priv: leaderboard scores recorded with `ens lb`; –: no value (not measured for that row)."]
    return lines + _apart_line(frame) + picks + list(frame.attrs.get("partial", []))  # partial runs: how to finish


def cv_public_correlation(frame: pd.DataFrame) -> dict[str, float] | None:
    """Pearson and Spearman correlation of the trusted CV score (the board's basis) vs public score, once
    three or more rows have both."""
    basis = frame.attrs.get("basis", "cv")
    both = frame[frame["kind"].isin(["submission", "run"]) & frame[basis].notna() & frame["public"].notna()]
    if len(both) < 3:
        return None
    cv, public = both[basis].astype(float), both["public"].astype(float)
    if cv.nunique() < 2 or public.nunique() < 2:
        return None
    return {"n": int(len(both)), "pearson": float(np.corrcoef(cv, public)[0, 1]),
            "spearman": float(cv.rank().corr(public.rank())), "basis": basis}


def correlation_sentence(correlation: dict) -> str:
    """CV vs public correlation, and what it says about trusting CV to pick the next submission."""
    r = correlation["spearman"]
    what = "test-like CV" if correlation.get("basis") == "cv_testlike" else "CV"
    verdict = (f"{what} orders submissions as the leaderboard does: trust it to choose" if r >= 0.8 else
               f"{what} and the leaderboard disagree: trust it less (or the public part is too small to rank "
               "them: see the noise lines)" if r < 0.4 else f"{what} roughly follows the leaderboard")
    return (f"{what} vs public over {correlation['n']} submissions: Pearson {correlation['pearson']:.3f}, "
            f"Spearman {correlation['spearman']:.3f} ({verdict})")


# ---------------------------------------------------------------- the leaderboard read with its noise


def _shown_name(row) -> str:
    written = row["written_as"] if isinstance(row["written_as"], str) else None
    return f"{row['name']} (submitted as {written})" if written else str(row["name"])


def _trusted_context(ws: Workspace, frame: pd.DataFrame, metric: str | None):
    """The scorer, test size, trusted rows and each scored row's predictions on them (None: no data folder)."""
    from ensemble.artifacts.competition import Competition
    from ensemble.errors import EnsError
    from ensemble.leaderboard.noise import row_predictions, trusted_rows
    from ensemble.metrics.scorer import COMPETITION

    try:
        comp = Competition.load(ws.data_dir(), ws.settings().get("task"))
    except (EnsError, OSError):
        return None
    scorer = _metric(ws, metric) or COMPETITION
    basis = frame.attrs.get("basis", trusted_basis(frame))
    rows = trusted_rows(ws, comp.labels, testlike=basis == "cv_testlike")
    if rows is None:
        return None
    predictions = {}
    for row in frame[frame["rank"].notna()].itertuples():
        p = row_predictions(ws, row.name, row.kind, rows, comp.labels)
        if p is not None:
            predictions[row.name] = p
    return scorer, len(comp.test_ids), rows, predictions


def noise_lines(ws: Workspace, frame: pd.DataFrame, metric: str | None = None) -> list[str]:
    """For rows with public scores: each neighbour pair's public difference against the public subset's
    sampling noise, and a warning where the public order contradicts trusted CV's beyond it."""
    from ensemble.leaderboard.noise import pair_verdicts, public_share

    public = frame[frame["public"].notna() & frame["rank"].notna()]
    if len(public) < 2:
        return []
    share = public_share(ws)
    if share is None:
        return ["pub: tell ens the public leaderboard's share of the test (`ens lb --public-share 0.5`) to read "
                "public differences against their noise"]
    context = _trusted_context(ws, frame, metric)
    if context is None:
        return ["pub: no noise verdict (the competition folder or the trusted rows are missing)"]
    scorer, n_test, rows, predictions = context
    public_rows = max(1, round(share * n_test))
    names = {row["name"]: _shown_name(row) for _, row in public.iterrows()}
    lacking = [names[n] for n in names if n not in predictions]
    neighbours, disagree = pair_verdicts(public, predictions, rows, public_rows, frame.attrs.get("basis", "cv"), scorer)
    lines = []
    for v in neighbours:
        v.better, v.worse = names[v.better], names[v.worse]
        lines.append(v.sentence(public_rows, n_test))
    for v in disagree:
        v.better, v.worse = names[v.better], names[v.worse]
        lines.append(v.warning())
    if lacking:
        lines.append(f"pub: no noise verdict for {', '.join(lacking)} (no predictions on the trusted rows recorded; "
                     "stacked before ens wrote them: stack it again)")
    return lines


def final_lines(ws: Workspace, frame: pd.DataFrame, k: int, metric: str | None = None) -> list[str]:
    """`ens board --final K`: the trusted best and the hedges that err differently, each with its reason."""
    from ensemble.leaderboard.noise import FinalPick, final_picks

    context = _trusted_context(ws, frame, metric)
    if context is None:
        return ["final: no choice (the competition folder or the trusted rows are missing)"]
    scorer, _, rows, predictions = context
    ranked = frame[frame["rank"].notna()]
    shown = {row["name"]: row for _, row in ranked.iterrows()}
    chosen = ranked[ranked["pick"].notna()]  # the decision rule's pick comes first: it beat rank 1 or was not beaten
    first = None if chosen.empty else FinalPick(chosen["name"].iloc[0], f"the decision rule's pick ({chosen['pick'].iloc[0]})")
    picks = final_picks(ranked["name"].tolist(), predictions, rows, k, scorer, first=first)
    lines = []
    for i, pick in enumerate(picks, 1):
        row = shown[pick.name]
        how = "" if row["kind"] == "submission" or isinstance(row["written_as"], str) else (
            f" (a run: write it with `ens stack {pick.name} --method single --name {pick.name}-alone`)")
        lines.append(f"final {i}: {_shown_name(row)}: {pick.reason}{how}")
    if len(picks) < k:
        lines.append(f"final: only {len(picks)} ranked row(s) with predictions on the trusted rows")
    return lines
