"""`ens stack`: runs → aligned tensors → a stacker → a validated submission with its recipe and honest scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ensemble.artifacts.competition import Competition
from ensemble.artifacts.runs import MANIFEST_FILE, Run, load_runs
from ensemble.artifacts.submission import Written
from ensemble.artifacts.testlike_set import load_domain_check
from ensemble.artifacts.workspace import Workspace
from ensemble.errors import ConfigError
from ensemble.progress import Progress
from ensemble.stack.inputs import gather
from ensemble.task import MULTILABEL, Task

if TYPE_CHECKING:
    from ensemble.stack.pipeline import Comparison, StackResult


def default_name(method: str, run_names: list[str]) -> str:
    """`<method>-<run>+<run>…`, shortened to a hash when long."""
    import hashlib

    joined = "+".join(run_names)
    if len(joined) > 60:
        joined = f"{len(run_names)}runs-{hashlib.sha256(joined.encode()).hexdigest()[:8]}"
    return f"{method}-{joined}"


def _scores(parts) -> dict | None:
    return parts.as_dict() if parts is not None else None


def stack_runs(ws: Workspace, comp: Competition, run_names: list[str], method: str, *, params: dict | None = None,
               calibrate: str = "auto", test_prior: str = "none", fit_on: str = "auto", seed: int = 0,
               comparison: Comparison | None = None, progress: Progress | None = None, meta: str = "auto",
               metric: str | None = None):
    """Stack the runs with one method; returns (StackResult, sidecar dict for the submission).

    `method="auto"` (or a `comparison` already made) writes what the decision rule chooses
    (`ensemble.stack.decide`): the best single run unless a blend or calibration credibly beats it.
    `meta`: feature sets whose per-clip meta-features the methods that take them use (see `meta_sets`).
    """
    prior = _prior_mode(test_prior)
    _check_method(method)
    metric = ws.metric(comp.task, metric)
    sets = meta_sets(ws, meta, method)
    runs = load_runs(ws, run_names)
    return _stack(ws, comp, runs, gather(ws, comp, runs, sets), method, prior, params=params, calibrate=calibrate,
                  test_prior=test_prior, fit_on=fit_on, seed=seed, comparison=comparison, progress=progress,
                  metric=metric)


def meta_sets(ws: Workspace, meta: str, method: str) -> list[str]:
    """The feature sets `--meta` names: `none`; `auto` (every set in the workspace, offered to the comparison
    as extra candidates, written only when one credibly beats the best single run; none for an explicit
    method, which no comparison backs); or `NAME[,NAME]` (with `logreg`/`lgbm`, or the comparison)."""
    from ensemble.artifacts.features import feature_set_names
    from ensemble.stack.base import BLENDERS

    if meta == "none":
        return []
    if meta == "auto":
        return feature_set_names(ws) if method == "auto" else []
    names = [n.strip() for n in meta.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--meta must be auto, none or feature set names such as vad; got {meta!r}")
    if method != "auto" and not BLENDERS.get(method).uses_meta:
        takers = ", ".join(n for n, c in BLENDERS.items() if c.uses_meta)
        raise ConfigError(f"--meta {meta}: method {method!r} takes no meta-features; use one of {takers}, "
                          "or --compare")
    return names


def _stack(ws: Workspace, comp: Competition, runs: list[Run], inputs, method: str, prior: str | float, *,
           params: dict | None, calibrate: str, test_prior: str, fit_on: str, seed: int,
           comparison: Comparison | None, progress: Progress | None, metric: str):
    """`stack_runs` on runs already loaded and gathered into `inputs`, every choice made on `metric`."""
    from ensemble.stack.pipeline import stack

    run_names = [run.name for run in runs]
    _check_options(runs, inputs, calibrate, prior, fit_on)
    decision = None
    if method == "auto" or comparison is not None:
        comparison = comparison or _compare(inputs, run_names, calibrate, fit_on, seed, progress=progress,
                                            metric=metric, task=comp.task)
        chosen = comparison.chosen
        method, params, calibrate = chosen.method, chosen.params, chosen.calibrate
        decision = comparison.decision.as_dict(comparison.candidates)
        use_meta = chosen.meta
        if use_meta and inputs.meta is None:
            raise ConfigError(f"the comparison chose {chosen.name}, which needs the meta-features it was offered; "
                              "stack with the same --meta")
    else:
        use_meta = inputs.meta is not None
    result = stack(inputs.oof, inputs.y, inputs.folds, inputs.test, method=method, params=params,
                   calibrate=calibrate, test_prior=prior, fit_on=fit_on,
                   P_tl=inputs.testlike, y_tl=inputs.y_testlike, folds_tl=inputs.folds_testlike,
                   w_tl=inputs.w_testlike, labels=comp.labels, seed=seed, progress=progress,
                   meta=inputs.meta if use_meta else None, metric=metric, task=comp.task)
    recipe = {**result.recipe, "method": method, "runs": _run_hashes(runs), "seed": seed, "metric": metric,
              "task": comp.task.name,
              "calibrate": calibrate, "test_prior": test_prior, "fit_on": fit_on,
              "testlike_weighting": inputs.weighting,
              "meta_offered": None if inputs.meta is None else inputs.meta.record()["columns"]}
    if decision is not None:
        recipe["decision"] = decision
    sidecar = {
        "recipe": recipe,
        "metrics": {"cv": _scores(result.nested), "cv_testlike": _scores(result.nested_testlike),
                    "in_sample": _scores(result.in_sample), "optimism": result.optimism, "gain": result.gain},
        "warnings": result.warnings, "prior_sensitivity": result.sensitivity, "seconds": round(result.seconds, 3),
        "testlike_domain": load_domain_check(ws),
    }
    if comp.task.exclusive and result.oof is not None:  # the usual numbers beside the metric, on the nested OOF
        from ensemble.metrics.scorer import class_report

        report = class_report(inputs.y, result.oof, comp.labels)
        sidecar["metrics"]["cv"] = {**(sidecar["metrics"]["cv"] or {}), "metric": metric,
                                    **{k: report[k] for k in ("logloss", "accuracy", "macro_f1")}}
        sidecar["metrics"]["cv_report"] = report
    if decision is not None:  # what the decision compared, for `ens report`'s table
        from ensemble.stack.explain import COMPARE_KEYS

        sidecar["comparison"] = [{k: row.get(k) for k in COMPARE_KEYS} for row in comparison.sorted_rows()]
    return result, sidecar


def _check_method(method: str) -> None:
    from ensemble.stack.base import BLENDERS

    if method != "auto" and method not in BLENDERS:
        raise ConfigError(f"unknown stacking method {method!r}; choose one of: auto, {', '.join(BLENDERS)}")


def _check_options(runs: list[Run], inputs, calibrate: str, prior: str | float, fit_on: str) -> None:
    """Options that need OOF or test-like OOF, refused with the runs that lack them (before any fitting)."""
    wants_oof = [f"--test-prior {prior}"] if prior != "none" else []
    wants_oof += [f"--calibrate {calibrate}"] if calibrate not in ("auto", "none") else []
    if inputs.oof is None and wants_oof:
        lacking = ", ".join(repr(r.name) for r in runs if not r.has_oof)
        raise ConfigError(f"{wants_oof[0]} needs OOF predictions for every run; runs without: {lacking} "
                          "(import them with --oof, or leave the option out)")
    if fit_on in ("testlike", "both") and inputs.testlike is None:
        lacking = ", ".join(repr(r.name) for r in runs if not r.has_testlike) or "every run"
        raise ConfigError(f"--fit-on {fit_on} needs test-like OOF (oof_testlike.parquet, made by `ens finetune`) "
                          f"for every run; runs without: {lacking} (use --fit-on auto or clean)")


def _prior_mode(value: str) -> str | float:
    if value in ("em", "none"):
        return value
    try:
        prior = float(value)
    except ValueError:
        prior = float("nan")
    if not 0 < prior < 1:  # NaN fails too
        raise ConfigError(f"--test-prior must be em, none or a number in (0, 1); got {value!r}")
    return prior


def _run_hashes(runs: list[Run]) -> list[dict[str, Any]]:
    from ensemble.artifacts.io import file_sha256

    return [{"run": run.name, "manifest_sha256": file_sha256(run.dir / MANIFEST_FILE),
             "files": run.manifest.get("files", {})} for run in runs]


def compare_methods(ws: Workspace, comp: Competition, run_names: list[str], *, methods: list[str] | None = None,
                    calibrate: str = "auto", fit_on: str = "auto", seed: int = 0,
                    progress: Progress | None = None, meta: str = "auto", metric: str | None = None) -> Comparison:
    """Every candidate (each run, raw and calibrated, and each method) by nested CV on the same folds,
    and the decision of which to write."""
    metric = ws.metric(comp.task, metric)
    inputs = gather(ws, comp, load_runs(ws, run_names), meta_sets(ws, meta, "auto"))
    return _compare(inputs, run_names, calibrate, fit_on, seed, methods, progress, metric, comp.task)


def _compare(inputs, run_names: list[str], calibrate: str, fit_on: str, seed: int,
             methods: list[str] | None = None, progress: Progress | None = None, metric: str | None = None,
             task: Task = MULTILABEL) -> Comparison:
    from ensemble.stack.pipeline import compare

    if inputs.oof is None:
        raise ConfigError("choosing a method (--compare, --method auto) needs OOF predictions for every run "
                          "(import them with --oof)")
    return compare(inputs.oof, inputs.y, inputs.folds, run_names=run_names, methods=methods, calibrate=calibrate,
                   fit_on=fit_on, P_tl=inputs.testlike, y_tl=inputs.y_testlike, folds_tl=inputs.folds_testlike,
                   w_tl=inputs.w_testlike, seed=seed, progress=progress, meta=inputs.meta, labels=inputs.labels,
                   metric=metric, task=task, testlike_check=inputs.testlike_check)



@dataclass
class StackOutcome:
    """What `ens stack` did: the comparison (with `--compare` or `auto`), and the written submission."""

    name: str
    comparison: Comparison | None
    result: StackResult | None = None   # None: compared only, nothing written
    sidecar: dict | None = None
    written: Written | None = None


def run_stack(ws: Workspace, comp: Competition, run_names: list[str], method: str, *, name: str | None = None,
              params: dict | None = None, calibrate: str = "auto", test_prior: str = "none", fit_on: str = "auto",
              seed: int = 0, compare: bool = False, write: bool = False, force: bool = False,
              progress: Progress | None = None, meta: str = "auto", metric: str | None = None) -> StackOutcome:
    """`ens stack`: one method (or `auto`, the decision rule's choice) written as a validated submission;
    with `compare`, every candidate side by side, written only with `write`."""
    from ensemble.artifacts.submission import check_free, submission_frame, write_submission

    method = "auto" if compare else method
    out_name = name if name is not None else default_name(method, run_names)
    writes = not compare or write
    if writes:
        check_free(ws, out_name, force)  # before seconds of stacking
        prior = _prior_mode(test_prior)
    _check_method(method)
    metric = ws.metric(comp.task, metric)
    sets = meta_sets(ws, meta, method)
    runs = load_runs(ws, run_names)
    inputs = gather(ws, comp, runs, sets)  # once, for the comparison and the submission alike
    comparison = (_compare(inputs, run_names, calibrate, fit_on, seed, progress=progress, metric=metric,
                           task=comp.task) if method == "auto" else None)
    if not writes:
        return StackOutcome(out_name, comparison)
    result, sidecar = _stack(ws, comp, runs, inputs, method, prior, params=params, calibrate=calibrate,
                             test_prior=test_prior, fit_on=fit_on, seed=seed, comparison=comparison,
                             progress=progress, metric=metric)
    written = write_submission(ws, out_name, submission_frame(result.test, comp), comp, sidecar, force=force)
    return StackOutcome(out_name, comparison, result, sidecar, written)
