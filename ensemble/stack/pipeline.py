"""The stacker's entry points for the CLI: `stack` (one method → test predictions + honest scores + recipe)
and `compare` (every method side by side).

Where to fit (`fit_on`): 'clean' OOF rows, 'testlike' rows (mixed, noised clips built from each fold's
held-out rows; closer to the test set), 'both', or 'auto' (= testlike when given). Whatever the fit
set, both evaluation sets are scored by the same outer folds: rows of fold k are predicted by a
pipeline that never saw a row of fold k. The test-like score is the one to trust when present.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from ensemble.artifacts.records import CalibrationNote, Recipe
from ensemble.audio.domain import shown_faithful
from ensemble.errors import ConfigError, DataError, EnsError
from ensemble.metrics.dacon import MetricError, ScoreParts
from ensemble.metrics.scorer import COMPETITION, Scorer, get_scorer
from ensemble.stack.base import BLENDERS, check_folds, check_meta_task, check_targets, check_tensor, make_blender
from ensemble.stack.calibration import check_calibrate
from ensemble.metrics.bootstrap import DECISION_BOOT
from ensemble.stack.decide import ALPHA, Candidate, Decision, Evidence, candidates, decide, family_alpha
from ensemble.stack.bootstrap import gain_interval
from ensemble.progress import Progress
from ensemble.stack.nested import EvalSet, FitCache, GuardSet, StackPipeline, best_single_run, nested_predict
from ensemble.stack.metafeatures import MetaFeatures, check_no_label_copy
from ensemble.stack.prior import adapt_prior, sensitivity_table
from ensemble.stack.request import FIT_ON, StackInputs, StackRequest
from ensemble.task import Task
from ensemble.stack.state import pipeline_state


@dataclass
class StackResult:
    """Everything `ens stack` writes or shows for one method."""

    test: np.ndarray                       # (test_rows, labels) final probabilities
    oof: np.ndarray | None                 # (rows, labels) nested OOF predictions on the clean rows
    oof_testlike: np.ndarray | None        # (rows_tl, labels) nested predictions on the test-like rows
    nested: ScoreParts | None              # clean rows
    nested_testlike: ScoreParts | None     # test-like rows (the one to trust when present)
    in_sample: ScoreParts | None           # fitted on the fit set and scored on it
    optimism: float | None                 # nested − in-sample score on the fit set (≥ 0 means optimism)
    gain: dict[str, Any] | None            # best single run's score − blend's, with bootstrap interval
    recipe: Recipe
    warnings: list[str] = field(default_factory=list)
    sensitivity: list[dict] = field(default_factory=list)
    seconds: float = 0.0


class Rows(NamedTuple):
    """Labelled rows: runs `(rows, runs, labels)`, targets `(rows, labels)` and fold ids `(rows,)`."""

    P: np.ndarray
    y: np.ndarray
    folds: np.ndarray


@dataclass
class _Data:
    P: np.ndarray
    y: np.ndarray
    folds: np.ndarray
    tl: Rows | None                  # the test-like rows, when given
    w_tl: np.ndarray | None = None  # density-ratio weight per test-like row (mean 1), or None
    scorer: Scorer = COMPETITION     # what every choice inside the stacker minimises
    meta: MetaFeatures | None = None  # per-clip meta-features, for the candidates that take them
    best_single: tuple[int, np.ndarray] | None = field(default=None, repr=False)  # `best_single_run`, once

    @property
    def trusted(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """`(P, y, weights)` of the rows whose score to trust: test-like when given, else clean."""
        return (self.tl.P, self.tl.y, self.w_tl) if self.tl is not None else (self.P, self.y, None)


def _check_weights(w_tl, n_rows: int) -> np.ndarray:
    w = np.asarray(w_tl, dtype=np.float64)
    if w.shape != (n_rows,) or not np.isfinite(w).all() or (w <= 0).any():
        raise DataError(f"w_tl must hold one positive, finite weight per test-like row ({n_rows},); got shape {w.shape}")
    return w / w.mean()


def _check_meta(meta: MetaFeatures | None, data: _Data, n_test: int, labels: Sequence[str]) -> MetaFeatures | None:
    """Meta-features shaped like the stacker's rows, none of them a copy of a label."""
    if meta is None:
        return None
    check_meta_task(data.scorer.task)
    meta.check(len(data.y), n_test, None if data.tl is None else len(data.tl.y))
    check_no_label_copy(meta.oof, data.y, meta.names, labels, "OOF")
    if data.tl is not None:
        check_no_label_copy(meta.testlike, data.tl.y, meta.names, labels, "test-like")
    return meta


def _check_data(inputs: StackInputs, metric: str | Scorer | None) -> _Data:
    """The OOF (and test-like) tensors, targets and folds checked; the scorer every choice minimises."""
    P = check_tensor(inputs.oof, "P_oof")
    y = check_targets(inputs.y, P)
    folds = check_folds(inputs.folds, P.shape[0])
    P_tl, y_tl, folds_tl, w_tl = inputs.testlike, inputs.y_testlike, inputs.folds_testlike, inputs.w_testlike
    if len(np.unique(folds)) < 2:
        raise DataError(f"folds must hold at least 2 fold ids for nested CV; got {np.unique(folds).tolist()}")
    tl = None
    given = [a is not None for a in (P_tl, y_tl, folds_tl)]
    if any(given) and not all(given):
        raise ConfigError("test-like data needs P_tl, y_tl and folds_tl together")
    if all(given):
        Pt = check_tensor(P_tl, "P_tl")
        if Pt.shape[1:] != P.shape[1:]:
            raise DataError(f"P_tl has runs × labels {Pt.shape[1:]}; the OOF tensor has {P.shape[1:]}")
        ft = check_folds(folds_tl, Pt.shape[0], "folds_tl")
        unknown = np.setdiff1d(ft, folds)
        if unknown.size:
            raise DataError(f"folds_tl holds fold ids {unknown.tolist()} absent from the OOF folds")
        tl = Rows(Pt, check_targets(y_tl, Pt, "y_tl"), ft)
    if w_tl is not None and tl is None:
        raise ConfigError("w_tl weighs test-like rows; none given")
    w = None if w_tl is None else _check_weights(w_tl, tl.P.shape[0])
    scorer = get_scorer(metric if metric is not None else inputs.task.default_metric, inputs.task)
    _check_task_rows(scorer.task, P, y, "P_oof")
    return _Data(P, y, folds, tl, w, scorer)


def _probed(data: _Data, inputs: StackInputs, request: StackRequest) -> dict | None:
    """`--test-prior lb`: the test-like rows reweighted to the probed label mix (`ensemble.stack.probed`);
    the probe record with the reweighting, or None for any other prior."""
    if str(request.test_prior) != "lb":
        return None
    if inputs.probed is None:
        raise ConfigError("--test-prior lb needs the leaderboard probes' label mix (`ens lb probe`)")
    record = dict(inputs.probed)
    if data.tl is not None:
        from ensemble.stack.probed import probed_weights

        data.w_tl, record["reweighting"] = probed_weights(data.tl[1], data.w_tl, record["shares"],
                                                          data.scorer.task.exclusive, list(inputs.labels))
    return record


def _adapt_probed(p_test: np.ndarray, ev: _Evaluation, data: _Data, record: dict, labels: list[str], P_test,
                  final: StackPipeline):
    """The test predictions moved from the label shares they were fitted to, to the probed ones. Blenders
    ignore row weights and calibrators count them, so a label whose calibrator was fitted (on rows
    reweighted to the probed mix) is already at the reweighted shares, and one left uncalibrated (or a
    multiclass temperature, which moves no class's share) is at the fit rows' plain shares."""
    from ensemble.stack.prior import PriorResult, adapt_prior, adjust_classes

    _, _, wf = _fit_set(data, ev.fit_on)
    plain, weighted = ev.y_fit.mean(axis=0), np.average(ev.y_fit, axis=0, weights=wf)
    if data.scorer.task.exclusive:
        train = [float(v) for v in plain]
        nan = [float("nan")] * len(train)
        result = PriorResult("lb", train, nan, nan, list(record["shares"]), [], adjust_classes(p_test, train, record["shares"]))
    else:
        calibrated = [c.get("calibrator", "none") != "none" for c in final.calibration_]
        fitted = [float(weighted[j] if calibrated[j] else plain[j]) for j in range(len(plain))]
        result = adapt_prior(p_test, ev.p_fit, ev.y_fit, list(record["shares"]), labels, runs=(ev.P_fit, P_test),
                             fitted_prior=fitted)
        result.mode = "lb"
    result.joint = {**(result.joint or {}), "probed": record}
    return result


def _check_task_rows(task: Task, P: np.ndarray, y: np.ndarray | None, name: str) -> None:
    """What `task` asks of the inputs: multiclass — each run's rows sum to 1, each target row holds one class."""
    from ensemble.artifacts.competition import SUM_TOL

    wrong = np.zeros(0, dtype=bool) if y is None else task.bad_targets(y)
    if wrong.any():
        row = int(np.flatnonzero(wrong)[0])
        raise DataError(f"multiclass targets need exactly one class per row; row {row} has {int(y[row].sum())}")
    bad = task.bad_rows(P, SUM_TOL)
    if bad.any():
        row, run = (int(v) for v in np.argwhere(bad)[0])
        raise DataError(f"{name}: run {run}'s probabilities in row {row} sum to {P[row, run].sum():.6g}; "
                        "a multiclass run's rows must sum to 1")


def _check_task_options(inputs: StackInputs, request: StackRequest) -> None:
    """Options that work label by label refused for a multiclass task, before any compute."""
    if inputs.task.label_by_label:
        return
    if str(request.prior) not in ("none", "lb"):
        raise ConfigError("--test-prior adapts each label's prior on its own; a multiclass task uses 'none' "
                          "or 'lb' (the leaderboard probes' class mix)")
    from ensemble.stack.multiclass import check_calibrate_multiclass

    check_calibrate_multiclass(request.calibrate)


def _fit_meta(data: _Data, fit_on: str) -> np.ndarray | None:
    """The fit rows' meta-features (`fit_on` resolved), in `_fit_set`'s row order."""
    m = data.meta
    return None if m is None else {"clean": m.oof, "testlike": m.testlike,
                                   "both": None if m.testlike is None else np.concatenate([m.oof, m.testlike])}[fit_on]


def _fit_set(data: _Data, fit_on: str) -> tuple[str, Rows, np.ndarray | None]:
    """The rows blenders and calibrators are fitted on, and their weights (None: all equal)."""
    if fit_on not in FIT_ON:
        raise ConfigError(f"fit_on must be one of {', '.join(FIT_ON)}; got {fit_on!r}")
    if fit_on == "auto":
        fit_on = "testlike" if data.tl is not None else "clean"
    if fit_on in ("testlike", "both") and data.tl is None:
        raise ConfigError(f"fit_on={fit_on!r} needs test-like OOF (P_tl, y_tl, folds_tl); none given")
    clean = Rows(data.P, data.y, data.folds)
    if fit_on == "clean":
        return fit_on, clean, None
    if fit_on == "testlike":
        return fit_on, data.tl, data.w_tl
    weights = None if data.w_tl is None else np.concatenate([np.ones(len(data.y)), data.w_tl])
    return fit_on, Rows(*(np.concatenate([a, b]) for a, b in zip(clean, data.tl))), weights


def _factory(method: str, params: dict | None, seed: int, scorer: Scorer) -> Callable:
    """New blenders of `method` for the scorer's task; a method that chooses by a metric (hill climbing)
    gets the stacker's unless `params` name one."""
    params = dict(params or {})
    probe = make_blender(method, scorer.task, **params)
    if "seed" in probe.get_params() and "seed" not in params:
        params["seed"] = seed
    if "metric" in probe.get_params() and "metric" not in params and scorer.name != probe.get_params()["metric"]:
        params["metric"] = scorer.name
    return lambda: make_blender(method, scorer.task, **params)


def _score(y: np.ndarray, p: np.ndarray, warnings: list[str], what: str, scorer: Scorer,
           weights: np.ndarray | None = None) -> ScoreParts | None:
    try:
        return scorer.score_parts(y, p, weights)
    except MetricError as err:
        warnings.append(f"{what}: {err}")
        return None


@dataclass
class _Evaluation:
    """One method's nested and in-sample scores, and the fit set it was fitted on."""

    fit_on: str                                # resolved: clean, testlike or both
    oof: dict[str, np.ndarray]                 # nested predictions: "clean", and "testlike" when given
    nested: dict[str, ScoreParts | None]       # their scores
    in_sample: ScoreParts | None               # the final pipeline scored on its own fit set
    P_fit: np.ndarray                          # the fit set's runs
    p_fit: np.ndarray                          # its nested predictions
    y_fit: np.ndarray
    optimism: float | None                     # nested − in-sample score on the fit set
    gain: dict[str, Any]                       # over the best single run, on the trusted rows
    warnings: list[str]


def _evaluate(data: _Data, request: StackRequest, progress: Progress | None,
              use_meta: bool = False, alpha: float = ALPHA,
              fitted: tuple[StackPipeline, _Evaluation] | None = None) -> tuple[StackPipeline, _Evaluation]:
    """Nested and in-sample scores of the request's method (with the meta-features when `use_meta`), and
    the pipeline fitted on the whole fit set; `fitted`: both made already for this request (a comparison's
    candidate), so only the gain is bootstrapped again (at `request.n_boot` and `alpha`)."""
    if fitted is not None:
        final, ev = fitted
        return final, replace(ev, gain=_gain(data, ev.oof, request, alpha), warnings=list(ev.warnings))
    factory = _factory(request.method, request.params, request.seed, data.scorer)
    calibrate = request.calibrate
    fit_on, (Pf, yf, ff), wf = _fit_set(data, request.fit_on)
    meta = data.meta if use_meta else None
    evals = {"clean": EvalSet(data.P, data.folds, None if meta is None else meta.oof)}
    if data.tl is not None:
        evals["testlike"] = EvalSet(data.tl.P, data.tl.folds, None if meta is None else meta.testlike)
    warnings: list[str] = []
    Mf = _fit_meta(data, fit_on) if use_meta else None
    guard = None  # clean rows a test-like-fitted `auto` calibrator must also help (`choose_calibrator`)
    if fit_on == "testlike":
        guard = GuardSet(data.P, data.y, data.folds, None if meta is None else meta.oof)
    cache = FitCache(factory, Pf, yf, ff, wf, Mf, guard)
    oof = nested_predict(factory, (Pf, yf, ff), evals, calibrate, progress, cache, data.scorer)
    final = StackPipeline(factory, calibrate, data.scorer).fit_cached(cache, frozenset())
    nested = {"clean": _score(data.y, oof["clean"], warnings, "nested clean score", data.scorer)}
    if data.tl is not None:
        nested["testlike"] = _score(data.tl.y, oof["testlike"], warnings, "nested test-like score", data.scorer,
                                    data.w_tl)
    fit_oof = {"clean": oof["clean"], "testlike": oof.get("testlike")}
    p_fit = fit_oof[fit_on] if fit_on != "both" else np.concatenate([oof["clean"], oof["testlike"]])
    in_sample = _score(yf, final.predict(Pf, Mf), warnings, "in-sample score", data.scorer, wf)
    nested_fit = nested.get(fit_on)  # the fit set is the clean or the test-like rows: scored just above
    if nested_fit is None:
        nested_fit = _score(yf, p_fit, warnings, "nested score on the fit set", data.scorer, wf)
    gain = _gain(data, oof, request, alpha, nested["testlike" if data.tl is not None else "clean"])
    optimism = None if nested_fit is None or in_sample is None else nested_fit.score - in_sample.score
    return final, _Evaluation(fit_on, oof, nested, in_sample, Pf, p_fit, yf, optimism, gain, warnings)


def _gain(data: _Data, oof: dict[str, np.ndarray], request: StackRequest, alpha: float,
          trusted: ScoreParts | None = None) -> dict[str, Any]:
    """The gain of nested predictions `oof` over the best single run on the trusted rows, with its interval
    (`trusted`: their score, when made already; with no replicates, the gain is the two losses' difference)."""
    trust = "testlike" if data.tl is not None else "clean"
    Pt, yt, wt = data.trusted
    if data.best_single is None:  # the same for every candidate of a comparison
        data.best_single = best_single_run(Pt, yt, wt, data.scorer)
    best, singles = data.best_single
    if request.n_boot == 0 and trusted is not None:  # a comparison's row: its interval is the decision's
        gain = {"gain": float(singles[best] - data.scorer.sign * trusted.score), "lo": float("nan"),
                "hi": float("nan"), "n_boot": 0, "alpha": alpha}
    else:
        gain = gain_interval(yt, oof[trust], Pt[:, best, :], n_boot=request.n_boot, alpha=alpha,
                             seed=request.seed, weights=wt, scorer=data.scorer)
    gain.update(best_run=best, best_run_score=float(data.scorer.sign * singles[best]), on=trust)
    return gain


def _recipe(method: str, final: StackPipeline, fit_on: str, calibrate: str, labels: Sequence[str]) -> Recipe:
    blender = final.blender_
    return Recipe(
        method=method, params=blender.hyper_params(), labels=list(labels), fit_on=fit_on, calibrate=calibrate,
        blender=blender.recipe(),
        calibrators=[CalibrationNote.from_dict({**c, "label": labels[c["label"]] if isinstance(c["label"], int)
                                                else c["label"]}, "the stacker's calibration")
                     for c in final.calibration_],
        decisions=getattr(blender, "decisions_", []),
        state=pipeline_state(blender, final.calibrators_),  # exact, for `ens export`
    )


def _test_only(P_test: np.ndarray, request: StackRequest, inputs: StackInputs, start: float) -> StackResult:
    """Runs without OOF predictions: a method that needs no targets, fitted on the test tensor, for the task."""
    method, calibrate, test_prior, labels = request.method, request.calibrate, request.prior, list(inputs.labels)
    scorer = get_scorer(request.metric if request.metric is not None else inputs.task.default_metric, inputs.task)
    blender = _factory(method, request.params, request.seed, scorer)()
    if blender.needs_targets:
        usable = [n for n, c in BLENDERS.items() if not c.needs_targets]
        raise EnsError(f"method {method!r} needs OOF predictions with targets; runs without OOF can use: "
                       f"{', '.join(usable)}")
    if calibrate not in ("auto", "none"):
        raise ConfigError(f"calibrate={calibrate!r} needs OOF predictions; without them use 'none'")
    if str(test_prior) != "none":
        raise ConfigError(f"test_prior={test_prior!r} needs OOF predictions; without them use 'none'")
    blender.fit(P_test, None)
    recipe = Recipe(method=method, params=blender.hyper_params(), labels=list(labels), fit_on="test", calibrate="none",
                    blender=blender.recipe(), calibrators=[], decisions=[], state=pipeline_state(blender, []))
    warnings = ["no OOF predictions: fitted on the test tensor, not calibrated, no CV score"]
    return StackResult(blender.predict(P_test), None, None, None, None, None, None, None, recipe, warnings,
                       seconds=time.perf_counter() - start)


def single_threaded_blas(func: Callable) -> Callable:
    """Run `func` with one BLAS thread: the stacker's matrices are thin, and BLAS threads fighting over
    2 shared cores made small L-BFGS fits 10× slower."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return func(*args, **kwargs)

    return wrapper


@single_threaded_blas
def stack(inputs: StackInputs, request: StackRequest, progress: Progress | None = None,
          comparison: "Comparison | None" = None) -> StackResult:
    """Blend, calibrate and prior-adapt the test predictions with the request's method; score it by nested CV.

    `inputs.meta`: per-clip meta-features for OOF, test-like and test rows, for a method that takes them.
    `comparison`: one made of these inputs; a candidate it fitted for this request is not fitted again."""
    start = time.perf_counter()
    request.check()
    method, meta, test_prior = request.method, inputs.meta, request.prior
    if method == "auto":
        raise ConfigError("method 'auto' is the comparison's choice: compare first, then stack the chosen candidate")
    P_test = check_tensor(inputs.test, "P_test")
    labels = list(inputs.labels)
    if len(labels) != P_test.shape[2]:
        raise DataError(f"labels names {len(labels)} columns but P_test has {P_test.shape[2]} labels")
    if meta is not None and not BLENDERS.get(method).uses_meta:
        raise ConfigError(f"method {method!r} takes no meta-features; these do: "
                          f"{', '.join(n for n, c in BLENDERS.items() if c.uses_meta)}")
    if inputs.oof is None:
        if meta is not None:
            raise ConfigError("meta-features need OOF predictions for every run; without them leave them out")
        return _test_only(P_test, request, inputs, start)
    _check_task_options(inputs, request)
    _check_task_rows(inputs.task, P_test, None, "P_test")
    data = _check_data(inputs, request.metric)
    if P_test.shape[1:] != data.P.shape[1:]:
        raise DataError(f"P_test has runs × labels {P_test.shape[1:]}; the OOF tensor has {data.P.shape[1:]}")
    data.meta = _check_meta(meta, data, P_test.shape[0], labels)
    probed = _probed(data, inputs, request)
    family = _candidates(list(inputs.runs), request.calibrate, data.scorer, with_meta=meta is not None)
    n_challengers = len(family) - 1
    fitted = None if comparison is None else comparison.fitted_for(request, meta is not None)
    final, ev = _evaluate(data, request, progress, use_meta=meta is not None, alpha=family_alpha(n_challengers),
                          fitted=fitted)
    ev.gain["challengers"] = n_challengers
    p_test = final.predict(P_test, None if meta is None else meta.test)
    prior = (_adapt_probed(p_test, ev, data, probed, labels, P_test, final) if probed is not None else
             adapt_prior(p_test, ev.p_fit, ev.y_fit, test_prior, labels, runs=(ev.P_fit, P_test)))
    recipe = replace(_recipe(method, final, ev.fit_on, request.calibrate, labels),
                     meta_features=None if meta is None else meta.record(), prior=prior.recipe())
    sens = (sensitivity_table(ev.y_fit, ev.p_fit, prior.prior_train, labels=labels, scorer=data.scorer)
            if data.scorer.task.label_by_label else [])
    return StackResult(
        test=prior.p_test, oof=ev.oof["clean"], oof_testlike=ev.oof.get("testlike"),
        nested=ev.nested["clean"], nested_testlike=ev.nested.get("testlike"), in_sample=ev.in_sample,
        optimism=ev.optimism, gain=ev.gain, recipe=recipe, warnings=ev.warnings + prior.warnings,
        sensitivity=sens, seconds=time.perf_counter() - start,
    )


@dataclass
class Comparison:
    """Every candidate scored by nested CV, and the decision of what to write."""

    candidates: list[Candidate]
    rows: list[dict[str, Any]]        # one per candidate, in candidate order
    decision: Decision
    scorer: Scorer = COMPETITION
    # each candidate's request, whether it took the meta-features, final pipeline and evaluation: `stack`
    # reuses the chosen one's fits
    fitted: list[tuple[StackRequest, bool, StackPipeline, _Evaluation]] = field(default_factory=list, repr=False)

    def fitted_for(self, request: StackRequest, meta: bool) -> tuple[StackPipeline, _Evaluation] | None:
        """The final pipeline and evaluation this comparison made for `request` (n_boot aside) with or
        without the meta-features, or None."""
        key = replace(request, n_boot=0)
        return next(((final, ev) for r, m, final, ev in self.fitted if r == key and m == meta), None)

    @property
    def chosen(self) -> Candidate:
        return self.candidates[self.decision.chosen]

    def sorted_rows(self) -> list[dict[str, Any]]:
        """Rows best first by the trusted nested score (unscored last)."""
        return sorted(self.rows, key=lambda r: (r.get("score") is None, self.scorer.sign * (r.get("score") or 0.0)))


def _candidates(names: list[str], calibrate: str, scorer: Scorer, methods: Sequence[str] | None = None,
                with_meta: bool = False) -> list[Candidate]:
    """What a comparison of these runs weighs: every candidate the task's methods make."""
    if methods is None:
        from ensemble.stack.decide import blend_methods

        methods = [m for m in blend_methods() if BLENDERS[m].blends(scorer.task)]
    return candidates(names, methods, calibrate, with_meta=with_meta)


@single_threaded_blas
def compare(inputs: StackInputs, request: StackRequest, progress: Progress | None = None,
            methods: Sequence[str] | None = None, n_boot: int = DECISION_BOOT) -> Comparison:
    """Every candidate (each run raw and calibrated, each method, and with `inputs.meta` each method that
    takes meta-features once more with them) by nested CV, and the one to write.

    `inputs.testlike_check` is the test-like set's recorded domain check: while it does not show the set
    faithful, a challenger must also not be credibly worse on the clean rows (`ensemble.stack.decide`).

    A row holds the trusted nested score and parts, the clean/test-like scores, in-sample score, gap,
    gain over the best single run (its interval is in `decision.tests`), seconds, and whether the
    decision chose it.
    """
    check_calibrate(request.calibrate)
    _check_task_options(inputs, request)
    data = _check_data(inputs, request.metric)
    meta, testlike_check = inputs.meta, inputs.testlike_check
    names = list(inputs.runs)
    if len(names) != data.P.shape[1]:
        raise DataError(f"inputs name {len(names)} runs; the OOF tensor has {data.P.shape[1]}")
    if meta is not None:
        data.meta = _check_meta(meta, data, meta.test.shape[0], inputs.labels)
    _probed(data, inputs, request)
    cands = _candidates(names, request.calibrate, data.scorer, methods, with_meta=meta is not None)
    trust = "testlike" if data.tl is not None else "clean"
    rows, trusted, clean, fitted = [], [], [], []
    n_folds = len(np.unique(np.concatenate([data.folds] + ([data.tl.folds] if data.tl is not None else []))))
    for i, cand in enumerate(cands):
        start = time.perf_counter()
        # one bar over candidates × outer folds
        bar = None if progress is None else (lambda e, i=i, name=cand.name: progress(
            {"stage": "compare", "candidate": name, "done": i * n_folds + e["done"], "total": len(cands) * n_folds}))
        # n_boot=0: the gain intervals are the decision's (below), not bootstrapped twice
        asked = replace(request.with_candidate(cand), n_boot=0)
        final, ev = _evaluate(data, asked, bar, cand.meta)
        fitted.append((asked, cand.meta, final, ev))
        trusted.append(ev.oof[trust])
        clean.append(ev.oof["clean"])
        rows.append(_compare_row(cand, ev, data) | {"seconds": time.perf_counter() - start})
    _, y_trusted, w_trusted = data.trusted
    faithful = data.tl is not None and shown_faithful(testlike_check)
    other = Evidence(clean, data.y) if data.tl is not None and not faithful else None
    note = ""
    if faithful:
        lo, hi = testlike_check["auc_interval"]
        note = (f"the clean rows were not asked: the test-like set passed its domain check on held-out real "
                f"clips (AUC {testlike_check['auc']:.3f}, 95 % [{lo:.3f}, {hi:.3f}] ≤ {testlike_check['threshold']:.2f})")
    losses = [None if r.get("score") is None else data.scorer.sign * r["score"] for r in rows]
    decision = decide(cands, losses, Evidence(trusted, y_trusted, w_trusted), other, n_boot=n_boot, seed=request.seed,
                      scorer=data.scorer, note=note)
    for i, row in enumerate(rows):
        row["chosen"] = i == decision.chosen
    return Comparison(cands, rows, decision, data.scorer, fitted)


def _compare_row(cand: Candidate, ev: _Evaluation, data: _Data) -> dict[str, Any]:
    trusted = ev.nested.get("testlike") or ev.nested["clean"]
    row = {"method": cand.name, **({k: getattr(trusted, k) for k in ("score", "auc", "brier", "ece")} if trusted else {})}
    row["score_clean"] = ev.nested["clean"].score if ev.nested["clean"] else None
    if data.tl is not None:
        row["score_testlike"] = ev.nested["testlike"].score if ev.nested["testlike"] else None
    row["in_sample"] = ev.in_sample.score if ev.in_sample else None
    row.update(gap=ev.optimism, gain=ev.gain["gain"])
    return row
