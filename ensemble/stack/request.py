"""What the stacker is given and asked: `StackInputs` (aligned tensors) and `StackRequest` (every option).

The CLI builds one `StackRequest` and checks it before any compute; the command layer gathers one
`StackInputs` from the runs; `stack.pipeline.stack` and `compare` take both. A recipe written into a
submission's sidecar turns back into the request that made it (`StackRequest.from_recipe`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from ensemble.errors import ConfigError
from ensemble.metrics.bootstrap import METHOD_BOOT
from ensemble.task import MULTILABEL, Task

if TYPE_CHECKING:
    from ensemble.artifacts.records import Recipe
    from ensemble.metrics.scorer import Scorer
    from ensemble.stack.decide import Candidate
    from ensemble.stack.metafeatures import MetaFeatures

FIT_ON = ("auto", "clean", "testlike", "both")


@dataclass
class StackInputs:
    """Everything a stacker needs, aligned: rows in folds-file order, test rows in submission order."""

    runs: list[str]
    labels: list[str]
    test: np.ndarray                    # (test rows, runs, labels)
    oof: np.ndarray | None = None       # (rows, runs, labels)
    y: np.ndarray | None = None         # (rows, labels)
    folds: np.ndarray | None = None     # (rows,)
    testlike: np.ndarray | None = None  # (test-like rows, runs, labels)
    y_testlike: np.ndarray | None = None
    folds_testlike: np.ndarray | None = None
    w_testlike: np.ndarray | None = None  # density-ratio weights, when the set has usable ones
    weighting: str = "none"               # why the test-like rows are (not) weighted
    testlike_check: dict | None = None    # the test-like set's recorded domain check (`DomainCheck.to_dict()`)
    meta: MetaFeatures | None = None      # per-clip meta-features of the feature sets asked for
    task: Task = MULTILABEL
    probed: dict | None = None            # the leaderboard probes' label mix (`ProbeResult.record()`), for --test-prior lb


@dataclass(frozen=True)
class StackRequest:
    """One `ens stack` call: which runs, how to blend, calibrate and adapt, and what to write.

    `compare`: score every candidate side by side (implies `method="auto"`); `write`: write the chosen
    or asked-for submission (the CLI's `--compare` alone writes nothing). `metric=None` means the
    workspace's metric, which the command layer fills in before stacking.
    """

    runs: tuple[str, ...] = ()
    method: str = "mean"
    params: Mapping[str, Any] = field(default_factory=dict)
    calibrate: str = "auto"
    test_prior: str | float = "none"    # none, em, lb (the leaderboard probes' mix), or an assumed prior in (0, 1)
    fit_on: str = "auto"
    seed: int = 0
    meta: str = "auto"                  # feature sets for meta-features: auto, none or NAME[,NAME]
    metric: str | Scorer | None = None
    name: str | None = None             # submission name; None: `<method>-<runs>`
    compare: bool = False
    write: bool = True
    force: bool = False
    n_boot: int = METHOD_BOOT           # bootstrap resamples for the gain interval of one method

    def __post_init__(self) -> None:
        object.__setattr__(self, "runs", tuple(self.runs))
        object.__setattr__(self, "params", dict(self.params or {}))
        if self.compare:
            object.__setattr__(self, "method", "auto")

    @property
    def prior(self) -> str | float:
        """`test_prior` parsed: 'none', 'em', 'lb' or a float in (0, 1)."""
        if self.test_prior in ("em", "none", "lb"):
            return self.test_prior
        try:
            value = float(self.test_prior)
        except ValueError:
            value = float("nan")
        if not 0 < value < 1:  # NaN fails too
            raise ConfigError(f"--test-prior must be em, none or a number in (0, 1), or lb (the leaderboard probes' mix); "
                              f"got {self.test_prior!r}")
        return value

    @property
    def meta_names(self) -> list[str]:
        """The feature sets `meta` names explicitly (none for `auto` and `none`)."""
        if self.meta in ("auto", "none"):
            return []
        return [n.strip() for n in self.meta.split(",") if n.strip()]

    @property
    def out_name(self) -> str:
        """The submission's name: `name`, else `<method>-<run>+<run>…` (a hash when long)."""
        if self.name is not None:
            return self.name
        import hashlib

        joined = "+".join(self.runs)
        if len(joined) > 60:
            joined = f"{len(self.runs)}runs-{hashlib.sha256(joined.encode()).hexdigest()[:8]}"
        return f"{self.method}-{joined}"

    def check(self) -> None:
        """Every option valid, so a bad one fails before any data is read or model fitted."""
        from ensemble.artifacts.workspace import check_name
        from ensemble.stack.base import BLENDERS, check_params
        from ensemble.stack.calibration import check_calibrate

        if self.name is not None:
            check_name(self.name, "submission")
        if self.method != "auto" and self.method not in BLENDERS:
            raise ConfigError(f"unknown stacking method {self.method!r}; choose one of: auto, {', '.join(BLENDERS)}")
        if self.method != "auto":
            check_params(self.method, self.params)
        if self.fit_on not in FIT_ON:
            raise ConfigError(f"--fit-on must be one of {', '.join(FIT_ON)}; got {self.fit_on!r}")
        check_calibrate(self.calibrate)
        self.prior  # noqa: B018  (raises on a bad value)
        if self.meta not in ("auto", "none"):
            if not self.meta_names:
                raise ConfigError(f"--meta must be auto, none or feature set names such as vad; got {self.meta!r}")
            if self.method != "auto" and not BLENDERS.get(self.method).uses_meta:
                takers = ", ".join(n for n, c in BLENDERS.items() if c.uses_meta)
                raise ConfigError(f"--meta {self.meta}: method {self.method!r} takes no meta-features; use one of "
                                  f"{takers}, or --compare")

    def with_candidate(self, cand: Candidate) -> StackRequest:
        """This request with a compared candidate's method, parameters and calibration."""
        return replace(self, method=cand.method, params=cand.params, calibrate=cand.calibrate, compare=False)

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> StackRequest:
        """The request that re-runs a written recipe (no writing): same runs, method, options, seed, metric."""
        return cls(runs=tuple(recipe.run_names), method=recipe.method, params=recipe.params,
                   calibrate=recipe.calibrate, test_prior=str(recipe.test_prior), fit_on=recipe.fit_on,
                   seed=int(recipe.seed), meta=",".join(recipe.meta_set_names) or "none", metric=recipe.metric,
                   write=False)
