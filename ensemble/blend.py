"""`ens stack`: runs → aligned tensors → a stacker → a validated submission with its recipe and honest scores."""

from __future__ import annotations

from typing import Any, Callable

from ensemble.competition import Competition
from ensemble.errors import ConfigError
from ensemble.runs import MANIFEST_FILE, Run, load_run
from ensemble.stack_inputs import gather
from ensemble.workspace import Workspace


def load_runs(ws: Workspace, run_names: list[str]) -> list[Run]:
    """The named runs, each named once."""
    if not run_names:
        raise ConfigError("name at least one run to stack (see `ens board` for the runs there are)")
    dup = sorted({n for n in run_names if run_names.count(n) > 1})
    if dup:
        raise ConfigError(f"run {dup[0]!r} is named twice")
    return [load_run(ws, name) for name in run_names]


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
               progress: Callable | None = None):
    """Stack the runs with one method; returns (StackResult, sidecar dict for the submission)."""
    from ensemble.stack.pipeline import stack

    prior = _prior_mode(test_prior)
    runs = load_runs(ws, run_names)
    inputs = gather(ws, comp, runs)
    _check_options(runs, inputs, calibrate, prior, fit_on)
    result = stack(inputs.oof, inputs.y, inputs.folds, inputs.test, method=method, params=params,
                   calibrate=calibrate, test_prior=prior, fit_on=fit_on,
                   P_tl=inputs.testlike, y_tl=inputs.y_testlike, folds_tl=inputs.folds_testlike,
                   labels=comp.labels, seed=seed, progress=progress)
    sidecar = {
        "recipe": {**result.recipe, "method": method, "runs": _run_hashes(runs), "seed": seed,
                   "calibrate": calibrate, "test_prior": test_prior, "fit_on": fit_on},
        "metrics": {"cv": _scores(result.nested), "cv_testlike": _scores(result.nested_testlike),
                    "in_sample": _scores(result.in_sample), "optimism": result.optimism, "gain": result.gain},
        "warnings": result.warnings, "prior_sensitivity": result.sensitivity, "seconds": round(result.seconds, 3),
    }
    return result, sidecar


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
    from ensemble.io import file_sha256

    return [{"run": run.name, "manifest_sha256": file_sha256(run.dir / MANIFEST_FILE),
             "files": run.manifest.get("files", {})} for run in runs]


def compare_methods(ws: Workspace, comp: Competition, run_names: list[str], *, methods: list[str] | None = None,
                    calibrate: str = "auto", fit_on: str = "auto", seed: int = 0) -> list[dict]:
    """Every method (or `methods`) scored by nested CV on the same folds, best first."""
    from ensemble.stack.pipeline import compare

    inputs = gather(ws, comp, load_runs(ws, run_names))
    if inputs.oof is None:
        raise ConfigError("--compare needs OOF predictions for every run (import them with --oof)")
    rows = compare(inputs.oof, inputs.y, inputs.folds, methods=methods, calibrate=calibrate, fit_on=fit_on,
                   P_tl=inputs.testlike, y_tl=inputs.y_testlike, folds_tl=inputs.folds_testlike, seed=seed)
    return sorted(rows, key=lambda r: (r.get("score") is None, r.get("score") or 0.0))


def method_names() -> list[str]:
    from ensemble.stack.base import BLENDERS

    return list(BLENDERS)
