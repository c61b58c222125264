"""`ens stack`: runs → aligned tensors → a stacker → a validated submission with its recipe and honest scores."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ensemble.artifacts.competition import Competition
from ensemble.artifacts.runs import RUN_MANIFEST_FILE, Run, load_runs
from ensemble.artifacts.records import CVScores, RunEntry, ScoreRecord, Sidecar
from ensemble.artifacts.submission import Written, new_sidecar
from ensemble.artifacts.testlike_set import load_domain_check
from ensemble.artifacts.workspace import Workspace
from ensemble.errors import ConfigError
from ensemble.progress import Progress
from ensemble.stack.inputs import gather
from ensemble.stack.request import StackRequest

if TYPE_CHECKING:
    from ensemble.stack.pipeline import Comparison, StackResult
    from ensemble.stack.request import StackInputs


def _scores(parts) -> dict | None:
    return parts.as_dict() if parts is not None else None


@dataclass
class StackOutcome:
    """What `ens stack` did: the comparison (with `--compare` or `auto`), and the written submission."""

    name: str
    comparison: Comparison | None
    result: StackResult | None = None   # None: compared only, nothing written
    sidecar: Sidecar | None = None
    written: Written | None = None


def run_stack(ws: Workspace, comp: Competition, request: StackRequest, progress: Progress | None = None,
              comparison: Comparison | None = None) -> StackOutcome:
    """`ens stack`: one method, or with `compare`/`method="auto"` every candidate side by side and the
    decision rule's choice (`ensemble.stack.decide`: the best single run unless a blend or calibration
    credibly beats it); written as a validated submission when `request.write`.

    Every option and the submission's name are checked before any data is read. A `comparison` already
    made for these runs is reused instead of comparing again.
    """
    from ensemble.artifacts.locking import name_lock
    from ensemble.artifacts.submission import check_free, submission_name_lock

    request.check()
    request = replace(request, name=request.out_name)  # one name, fixed before the method is resolved
    if request.write:
        check_free(ws, request.out_name, request.force)  # before seconds of stacking
    request = replace(request, metric=ws.metric(comp.task, request.metric))
    probed = None
    if request.test_prior == "lb":  # before any data is read: the probes and their scores must be there
        from ensemble.leaderboard.workspace import probed_mix

        probed = probed_mix(ws, comp).record()
    sets = meta_sets(ws, request)
    runs = load_runs(ws, list(request.runs))
    inputs = gather(ws, comp, runs, sets)  # once, for the comparison and the submission alike
    if probed is not None:
        inputs = replace(inputs, probed=probed)
    _check_options(runs, inputs, request)
    if not request.write:
        return _compute(ws, comp, runs, inputs, request, progress, comparison)
    # every input checked: the name is held from here to its last file, so a second writer is told at once
    with name_lock(submission_name_lock(ws, request.out_name), f"submission {request.out_name!r}"):
        return _compute(ws, comp, runs, inputs, request, progress, comparison)


def _compute(ws: Workspace, comp: Competition, runs: list[Run], inputs: StackInputs, request: StackRequest,
             progress: Progress | None, comparison: Comparison | None) -> StackOutcome:
    """`run_stack` once its inputs are checked: compare (when asked), stack, and write when `request.write`."""
    from ensemble.artifacts.submission import submission_frame, write_submission

    if comparison is None and request.method == "auto":
        comparison = _compare(inputs, request, progress)
    if request.compare and not request.write:
        return StackOutcome(request.out_name, comparison)
    result, sidecar = _stack(ws, comp, runs, inputs, request, comparison, progress)
    written = None
    if request.write:
        rows = _trusted_rows(ws, inputs, result)
        sidecar.metrics.rows_sha256 = None if rows is None else rows[1]
        written = write_submission(ws, submission_frame(result.test, comp), comp, sidecar, force=request.force)
        if rows is not None:  # after the pair: a submission refused leaves nothing behind
            from ensemble.leaderboard.noise import write_rows

            write_rows(ws, request.out_name, rows[0])
    return StackOutcome(request.out_name, comparison, result, sidecar, written)


def meta_sets(ws: Workspace, request: StackRequest) -> list[str]:
    """The feature sets `--meta` names: `none`; `auto` (every set in the workspace, offered to the comparison
    as extra candidates, written only when one credibly beats the best single run; none for an explicit
    method, which no comparison backs); or `NAME[,NAME]` (with `logreg`/`lgbm`, or the comparison)."""
    from ensemble.artifacts.features import feature_set_names

    if request.meta == "auto":
        return feature_set_names(ws) if request.method == "auto" else []
    return request.meta_names


def _compare(inputs: StackInputs, request: StackRequest, progress: Progress | None) -> Comparison:
    from ensemble.stack.pipeline import compare

    if inputs.oof is None:
        raise ConfigError("choosing a method (--compare, --method auto) needs OOF predictions for every run "
                          "(import them with --oof)")
    return compare(inputs, request, progress)


def _stack(ws: Workspace, comp: Competition, runs: list[Run], inputs: StackInputs, request: StackRequest,
           comparison: Comparison | None, progress: Progress | None) -> tuple[StackResult, Sidecar]:
    """The request's method (or the comparison's choice) stacked; the result and its sidecar."""
    from ensemble.stack.pipeline import stack

    decision = None
    if comparison is not None:
        chosen = comparison.chosen
        request = request.with_candidate(chosen)
        decision = comparison.decision.record(comparison.candidates)
        if chosen.meta and inputs.meta is None:
            raise ConfigError(f"the comparison chose {chosen.name}, which needs the meta-features it was offered; "
                              "stack with the same --meta")
        stacked = inputs if chosen.meta else replace(inputs, meta=None)
    else:
        stacked = inputs
    result = stack(stacked, request, progress, comparison)
    metric = request.metric
    recipe = replace(result.recipe, method=request.method, runs=_run_hashes(runs), seed=request.seed, metric=metric,
                     task=comp.task.name, calibrate=request.calibrate, test_prior=request.test_prior,
                     fit_on=request.fit_on, testlike_weighting=inputs.weighting, decision=decision,
                     meta_offered=None if inputs.meta is None else inputs.meta.record()["columns"])
    metrics = CVScores.from_dict({"cv": _scores(result.nested), "cv_testlike": _scores(result.nested_testlike),
                                  "in_sample": _scores(result.in_sample), "optimism": result.optimism,
                                  "gain": result.gain}, "metrics")
    from ensemble.metrics.scorer import get_scorer

    report = None if result.oof is None else get_scorer(metric, comp.task).class_report(inputs.y, result.oof, comp.labels)
    if report is not None:  # the usual numbers beside the metric, on the nested OOF
        metrics.cv = replace(metrics.cv or ScoreRecord(), metric=metric, logloss=report["logloss"],
                             accuracy=report["accuracy"], macro_f1=report["macro_f1"])
        metrics.cv_report = report
    compared = None
    if decision is not None:  # what the decision compared, for `ens report`'s table
        from ensemble.stack.explain import COMPARE_KEYS

        compared = [{k: row.get(k) for k in COMPARE_KEYS} for row in comparison.sorted_rows()]
    sidecar = new_sidecar(request.out_name, recipe, metrics, warnings=result.warnings,
                          prior_sensitivity=result.sensitivity, seconds=round(result.seconds, 3),
                          testlike_domain=load_domain_check(ws), comparison=compared)
    return result, sidecar


def _trusted_rows(ws: Workspace, inputs: StackInputs, result: StackResult) -> tuple[bytes, str] | None:
    """The submission's nested predictions on the rows the decision rule trusts (test-like, else clean), to
    write beside it, for reading leaderboard differences against their noise (`ensemble.leaderboard.noise`)."""
    from ensemble.artifacts.folds import load_folds
    from ensemble.artifacts.testlike_set import load_testlike
    from ensemble.leaderboard.noise import rows_bytes

    if result.oof_testlike is not None:
        return rows_bytes(load_testlike(ws)["id"].astype(str), result.oof_testlike, inputs.labels, "testlike")
    if result.oof is not None:
        return rows_bytes(load_folds(ws)["id"].astype(str), result.oof, inputs.labels, "clean")
    return None


def _check_options(runs: list[Run], inputs: StackInputs, request: StackRequest) -> None:
    """Options that need OOF or test-like OOF, refused with the runs that lack them (before any fitting)."""
    calibrate, prior, fit_on = request.calibrate, request.prior, request.fit_on
    wants_oof = [f"--test-prior {prior}"] if prior != "none" else []
    wants_oof += [f"--calibrate {calibrate}"] if calibrate not in ("auto", "none") else []
    if inputs.oof is None and wants_oof:
        lacking = ", ".join(repr(r.name) for r in runs if not r.has_oof)
        raise ConfigError(f"{wants_oof[0]} needs OOF predictions for every run; runs without: {lacking} "
                          "(import them with --oof, or leave the option out)")
    if fit_on in ("testlike", "both") and inputs.testlike is None:
        lacking = ", ".join(repr(r.name) for r in runs if not r.has_testlike_oof) or "every run"
        raise ConfigError(f"--fit-on {fit_on} needs test-like OOF (oof_testlike.parquet, made by `ens finetune`) "
                          f"for every run; runs without: {lacking} (use --fit-on auto or clean)")


def _run_hashes(runs: list[Run]) -> list[RunEntry]:
    from ensemble.artifacts.io import file_sha256

    return [RunEntry(run.name, file_sha256(run.dir / RUN_MANIFEST_FILE), run.manifest.files) for run in runs]
