"""What the demo dataset holds, decided before any audio is made: speakers, clips, voices, nuisances.

The plan is a pure function of its arguments and the seed. It is the ground truth: `test_answers.csv` is
written from it, and tests check the answers against the voices it places. Every clip carries its own
seed, so clips render independently (in any order, on any thread) and identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ensemble.demo.voices import VOICE_KINDS, Speaker, draw_speaker
from ensemble.errors import ConfigError

LABELS = ("fake", "real")  # the submission's column order, as in the contest


@dataclass(frozen=True)
class Placement:
    """One voice inside a test-like clip: `offset` and `seconds` in seconds, `gain_db` relative."""

    kind: str
    speaker: int
    seconds: float
    offset: float
    gain_db: float
    seed: int


@dataclass(frozen=True)
class TrainClip:
    """A clean single-voice clip; `lowpass` is a cutoff in Hz (0: none)."""

    id: str
    kind: str
    speaker: int
    seconds: float
    gain_db: float
    lowpass: float
    seed: int


@dataclass(frozen=True)
class TestClip:
    """A test-like clip of 0–2 voices over noise; 0 for `lowpass`/`rt60` means not applied."""

    id: str
    voices: tuple[Placement, ...]
    snr_db: float
    gain_db: float
    noise_alpha: float
    hum: float
    lowpass: float
    rt60: float
    seed: int

    @property
    def labels(self) -> dict[str, int]:
        """Multi-hot answer: 1 where at least one voice of that kind is present."""
        kinds = {v.kind for v in self.voices}
        return {label: int(label in kinds) for label in LABELS}


@dataclass(frozen=True)
class CompetitionPlan:
    """Everything `generate_competition` writes, before rendering."""

    sr: int
    test_seconds: float
    speakers: tuple[Speaker, ...]
    speaker_ids: tuple[str, ...]  # group names, numbered in shuffled order so they hide the kind
    train: tuple[TrainClip, ...]
    test: tuple[TestClip, ...]
    unlabeled: tuple[TestClip, ...]


@dataclass(frozen=True)
class DemoSpec:
    """What `generate_competition` is asked for: clip counts, sample rate, seed and test clip length (s)."""

    n_train: int = 240
    n_test: int = 120
    n_unlabeled: int = 20
    sr: int = 16000
    seed: int = 0
    test_seconds: float = 5.0


def plan_competition(spec: DemoSpec = DemoSpec()) -> CompetitionPlan:
    """Draw speakers and every clip's recipe from `spec.seed`."""
    _validate(spec)
    n_train, sr, test_seconds = spec.n_train, spec.sr, spec.test_seconds
    rng = np.random.default_rng(spec.seed)
    n_real, n_fake = max(3, round(n_train / 24)), max(3, round(n_train / 40))
    extra = 2  # speakers of each kind heard only in test-like clips, as in the contest
    # alternate sexes within each kind so a handful of speakers cannot make pitch a label cue
    drawn = [(k, j % 2 == 0) for k, n in (("real", n_real), ("fake", n_fake)) for j in range(n)]
    drawn += [(k, j % 2 == 1) for k in ("real", "fake") for j in range(extra)]
    order = rng.permutation(len(drawn))
    speakers = tuple(draw_speaker(drawn[i][0], rng, female=drawn[i][1]) for i in order)
    ids = tuple(f"SPK_{i:03d}" for i in range(len(speakers)))
    train_pool = {k: [i for i, j in enumerate(order) if drawn[j][0] == k and j < n_real + n_fake] for k in VOICE_KINDS}
    all_pool = {k: [i for i, s in enumerate(speakers) if s.kind == k] for k in VOICE_KINDS}
    train = tuple(_train_clip(i, kind, train_pool, sr, rng) for i, kind in enumerate(_train_kinds(n_train, rng)))
    test = tuple(_test_clip(f"TEST_{i:05d}", all_pool, sr, test_seconds, rng) for i in range(spec.n_test))
    unlabeled = tuple(_test_clip(f"UNLABEL_{i:05d}", all_pool, sr, test_seconds, rng)
                      for i in range(spec.n_unlabeled))
    return CompetitionPlan(sr, test_seconds, speakers, ids, train, test, unlabeled)


def _validate(spec: DemoSpec) -> None:
    if spec.n_train < 4:
        raise ConfigError(f"n_train: {spec.n_train} is too small; accepted: ≥ 4 (two of each class)")
    for name, value in (("n_test", spec.n_test), ("n_unlabeled", spec.n_unlabeled)):
        if value < 0:
            raise ConfigError(f"{name}: {value} is negative; accepted: ≥ 0")
    if spec.sr < 4000:
        raise ConfigError(f"sr: {spec.sr} is too low; accepted: ≥ 4000 Hz")
    if not spec.test_seconds > 0.05:
        raise ConfigError(f"test_seconds: {spec.test_seconds} is too short; accepted: > 0.05")


def _train_kinds(n: int, rng: np.random.Generator) -> list[str]:
    kinds = ["fake"] * (n // 2) + ["real"] * (n - n // 2)
    return [kinds[i] for i in rng.permutation(n)]


def _train_seconds(kind: str, rng: np.random.Generator) -> float:
    """0.8–4 s; fakes a little longer on average, so duration alone is a weak cue (AUC ≈ 0.6)."""
    a, b = (1.6, 2.0) if kind == "real" else (2.0, 1.8)
    return round(0.8 + 3.2 * float(rng.beta(a, b)), 3)


def _train_clip(i: int, kind: str, pool: dict[str, list[int]], sr: int, rng: np.random.Generator) -> TrainClip:
    cutoff = float(rng.choice([0.0, 0.69, 0.5], p=[0.6, 0.2, 0.2])) * sr / 2  # band limits for both classes
    return TrainClip(
        id=f"TRAIN_{i:05d}",
        kind=kind,
        speaker=int(rng.choice(pool[kind])),
        seconds=_train_seconds(kind, rng),
        gain_db=round(float(rng.uniform(-15.0, 5.0)), 2),
        lowpass=cutoff,
        seed=int(rng.integers(2**63)),
    )


def _test_clip(
    clip_id: str, pool: dict[str, list[int]], sr: int, seconds: float, rng: np.random.Generator
) -> TestClip:
    count = int(rng.choice(3, p=[0.15, 0.4, 0.45]))
    longest = min(4.0, seconds)
    voices = []
    for j in range(count):
        kind = "fake" if rng.random() < 0.5 else "real"
        length = round(float(rng.uniform(min(0.8, longest) * 0.999, longest)), 3)
        voices.append(
            Placement(
                kind=kind,
                speaker=int(rng.choice(pool[kind])),
                seconds=length,
                offset=round(float(rng.uniform(0.0, seconds - length)), 3),
                gain_db=0.0 if j == 0 else round(float(rng.uniform(-8.0, 8.0)), 2),
                seed=int(rng.integers(2**63)),
            )
        )
    return TestClip(
        id=clip_id,
        voices=tuple(voices),
        snr_db=round(float(rng.uniform(-5.0, 20.0)), 2),
        gain_db=round(float(rng.uniform(-12.0, 8.0)), 2),
        noise_alpha=round(float(rng.uniform(0.0, 2.0)), 3),
        hum=round(float(rng.uniform(0.05, 0.5)), 3) if rng.random() < 0.25 else 0.0,
        lowpass=round(float(rng.uniform(0.3, 0.75)) * sr / 2, 1) if rng.random() < 0.3 else 0.0,
        rt60=round(float(rng.uniform(0.2, 0.7)), 3) if rng.random() < 0.25 else 0.0,
        seed=int(rng.integers(2**63)),
    )
