"""`ens lb`: leaderboard scores recorded in a submission's sidecar, where `ens board` reads them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ensemble.artifacts.io import write_json
from ensemble.artifacts.locking import exclusive
from ensemble.artifacts.provenance import now_iso
from ensemble.artifacts.records import Sidecar
from ensemble.artifacts.submission import read_sidecar, submission_lock, submission_paths
from ensemble.artifacts.workspace import Workspace
from ensemble.errors import DataError

MAX_SCORE = 100.0  # a leaderboard score above this is a typo that would squeeze every column of the board


def record_leaderboard(ws: Workspace, name: str, public: float | None, private: float | None) -> Sidecar:
    """Store leaderboard scores in the submission's sidecar (under the submissions lock); returns it."""
    if public is None and private is None:
        raise DataError("give --public and/or --private")
    name = Path(name).stem if name.endswith((".csv", ".json")) else name
    scores = {}
    for key, value in (("public", public), ("private", private)):
        if value is not None:
            if not np.isfinite(value):
                raise DataError(f"--{key} must be a finite number, got {value}")
            if not 0 <= value <= MAX_SCORE:
                raise DataError(f"--{key} {value:g}: accepted: a finite score in [0, {MAX_SCORE:g}] (every metric "
                                "ens scores with is ≥ 0; log loss, the one without a bound, stays under 35)")
            scores[key] = float(value)
    read_sidecar(ws, name)  # an unknown name fails before the lock file is made
    with exclusive(submission_lock(ws)):
        sidecar = read_sidecar(ws, name)
        sidecar.leaderboard = replace(sidecar.leaderboard, **scores, recorded=now_iso())
        write_json(sidecar.to_dict(), submission_paths(ws, name)[1])
    return sidecar
