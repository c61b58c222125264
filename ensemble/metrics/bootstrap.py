"""Bootstrap replicates: their sizes (the one home of every `n_boot` default) and the row counts that
stand for them, drawn once per `(rows, n_boot, seed)` and reused by every column a choice scores.

A replicate is a vector of multinomial row counts, not an index copy, so a metric scores every replicate
at once as row weights. The counts are drawn in chunks of `CHUNK` replicates from one generator, in the
order the stacker always drew them, so reusing them changes no number.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np

DECISION_BOOT = 200    # the decision rule's paired gain intervals (`ens stack --compare`, `auto`)
METHOD_BOOT = DECISION_BOOT  # one method's gain interval: the decision's resamples, so a candidate has one interval
CALIBRATOR_BOOT = 100  # `auto` calibration: the interval of a calibrator's gain over none
FLIP_BOOT = 200        # `flip`: the AUC interval that shows a run inverted
DOMAIN_BOOT = 200      # the test-like set's domain check: the interval of its AUC
CHUNK = 20             # replicates drawn (and scored) per batch


def multinomial_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """`(n_boot, n)` counts of each row in `n_boot` bootstrap replicates of `n` rows."""
    return row_counts(n, n_boot, rng).astype(np.float64)


def row_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """`multinomial_counts` as integers (the same draws): what an exact rank-sum AUC takes as it is."""
    draws = rng.integers(0, n, size=(n_boot, n))
    draws += n * np.arange(n_boot)[:, None]  # each replicate's rows apart: one bincount for all
    return np.bincount(draws.ravel(), minlength=n_boot * n).reshape(n_boot, n)


def compact_counts(counts: np.ndarray) -> np.ndarray:
    """Integer row counts in the smallest type that holds them (`uint8`, else `int32`): a row's count in a
    replicate is about Poisson(1), and small counts take less memory and gather and add faster."""
    fits = not counts.size or counts.max() <= np.iinfo(np.uint8).max
    return counts.astype(np.uint8 if fits else np.int32)


@dataclass(frozen=True)
class Resamples:
    """`n_boot` bootstrap replicates of `rows` rows as small integer counts `counts_b` `(n_boot, rows)`,
    kept once: what the exact rank-sum AUC accumulates (a replicate's counts contiguous), and whose chunks
    of ≤ `CHUNK` replicates become the float counts the weighted Brier and ECE multiply (made per chunk, as
    they were drawn: the same floats, not all kept at once). A row's count in one replicate is small
    (about Poisson(1)), so `uint8` holds it where it fits: 200 replicates of 55,438 rows take 11 MB
    instead of 89 MB of floats. Read-only: shared by every caller with the same size and seed."""

    counts_b: np.ndarray

    @property
    def n_boot(self) -> int:
        return self.counts_b.shape[0]

    @property
    def rows(self) -> int:
        return self.counts_b.shape[1]

    @property
    def sizes(self) -> list[int]:
        """Replicates per chunk, in the order they were drawn (and their scores are paired)."""
        return [min(CHUNK, self.n_boot - start) for start in range(0, self.n_boot, CHUNK)]

    @property
    def chunks(self) -> Iterator[np.ndarray]:
        """The float counts `(≤ CHUNK, rows)` chunk by chunk, each made when it is reached."""
        return (self.counts_b[start:start + CHUNK].astype(np.float64) for start in range(0, self.n_boot, CHUNK))

    def counts(self) -> np.ndarray:
        """`(n_boot, rows)` float counts."""
        return self.counts_b.astype(np.float64)


@lru_cache(maxsize=4)
def resamples(n: int, n_boot: int, seed: int) -> Resamples:
    """The replicates the stacker draws for `n` rows with `seed` (the same numbers on every call)."""
    rng = np.random.default_rng(seed)
    drawn = []
    for start in range(0, n_boot, CHUNK):  # each chunk made small as it is drawn: no int64 copy of them all
        c = row_counts(n, min(CHUNK, n_boot - start), rng)
        drawn.append(compact_counts(c))
    counts_b = np.concatenate(drawn) if drawn else np.zeros((0, n), np.uint8)  # int32 if any chunk needed it
    counts_b.setflags(write=False)
    return Resamples(counts_b)
