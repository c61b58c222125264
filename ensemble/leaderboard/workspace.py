"""The probes in a workspace: `ens lb probe`'s submissions written for the workspace's metric, and the
label mix their recorded public scores reveal (`ensemble.leaderboard.probe`), read by `ens stack
--test-prior lb` and `ens board`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ensemble.artifacts.competition import Competition
from ensemble.artifacts.records import ProbeParams, Recipe
from ensemble.artifacts.submission import new_sidecar, read_sidecar, submission_frame, write_submission
from ensemble.artifacts.workspace import Workspace
from ensemble.errors import ConfigError, DataError
from ensemble.leaderboard.probe import PROBE_METHOD, ProbeResult, probe_constants, solve


@dataclass
class Probes:
    """The workspace's probe submissions: names, which still lack a public score, and the solved mix."""

    names: list[str]
    missing: list[str]
    result: ProbeResult | None


def probe_names(ws: Workspace) -> list[str]:
    """Names of the submissions that are probes, in probe order."""
    names = [n for n in ws.submission_names() if n.startswith("probe-")]
    probes = [n for n in names if read_sidecar(ws, n).recipe.method == PROBE_METHOD]
    return sorted(probes, key=lambda n: int(n.split("-")[1]) if n.split("-")[1].isdigit() else 0)


def write_probes(ws: Workspace, comp: Competition, digits: int, public_share: float, force: bool = False) -> list[str]:
    """Write one constant submission per probe (named probe-1 …) for the workspace's metric."""
    if not 0 < public_share <= 1:
        raise ConfigError(f"--public-share must be in (0, 1]; got {public_share}")
    if not 0 <= digits <= 12:
        raise ConfigError(f"--digits must be between 0 and 12; got {digits}")
    metric = ws.metric(comp.task)
    constants = probe_constants(metric, len(comp.labels), comp.task.exclusive)  # refuses before writing
    n_test = len(comp.test_ids)
    names = []
    for k, row in enumerate(constants, start=1):
        name = f"probe-{k}"
        params = ProbeParams(constants=row, digits=digits, public_share=public_share, metric=metric, n_test=n_test)
        recipe = Recipe(method=PROBE_METHOD, params=params.to_dict(),
                        labels=list(comp.labels), fit_on="test", calibrate="none", blender={}, calibrators=[],
                        decisions=[], state={}, metric=metric, task=comp.task.name)
        frame = submission_frame(np.tile(np.asarray(row, dtype=float), (n_test, 1)), comp)
        write_submission(ws, frame, comp, new_sidecar(name, recipe, {}), force=force)
        names.append(name)
    return names


def read_probes(ws: Workspace, comp: Competition | None = None) -> Probes:
    """The probes written so far and, when every one has a public score, the public label mix (checked
    against the workspace's metric when `comp` is given)."""
    names = probe_names(ws)
    sidecars = [read_sidecar(ws, n) for n in names]
    missing = [s.name for s in sidecars if s.leaderboard.public is None]
    if not names or missing:
        return Probes(names, missing, None)
    params = [ProbeParams.from_dict(s.recipe.params, f"submission {s.name!r}: recipe.params") for s in sidecars]
    metric, recipe = params[0].metric, sidecars[0].recipe
    if comp is not None and metric != ws.metric(comp.task):
        raise DataError(f"the probes were written for metric {metric!r}; the workspace now scores "
                        f"{ws.metric(comp.task)!r} (write them again with --force)")
    result = solve(metric, [p.constants for p in params], [s.leaderboard.public for s in sidecars],
                   int(params[0].digits), float(params[0].public_share), int(params[0].n_test),
                   list(recipe.labels), recipe.task_type.exclusive)
    return Probes(names, missing, result)


def mix_line(ws: Workspace) -> str | None:
    """One line for `ens board`: the public label mix the recorded probes reveal (None without one)."""
    try:
        result = read_probes(ws).result
    except DataError:
        return None
    if result is None:
        return None
    shares = ", ".join(f"{l} {s:.3f} ± {h:.3f}" for l, s, h in zip(result.labels, result.shares, result.half_width))
    return f"public label mix from the probes (`ens lb probe`; `--test-prior lb` uses it): {shares}"


def probed_mix(ws: Workspace, comp: Competition) -> ProbeResult:
    """The public label mix for `--test-prior lb`, or a one-line error saying what is missing."""
    probes = read_probes(ws, comp)
    if not probes.names:
        raise DataError("--test-prior lb needs leaderboard probes: run `ens lb probe`, submit the probe files and "
                        "record their public scores with `ens lb probe-N --public SCORE`")
    if probes.result is None:
        raise DataError(f"--test-prior lb: no public score recorded for {', '.join(probes.missing)} "
                        "(`ens lb NAME --public SCORE`)")
    return probes.result
