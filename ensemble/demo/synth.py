"""Write a small embedded fake-voice dataset in the competition's layout (`ens demo`, integration tests).

```
out_dir/train.csv              id,path,label        (label: real | fake)
out_dir/train/TRAIN_00000.ogg  clean single voice, 0.8–4 s
out_dir/test.csv               id,path
out_dir/test/TEST_00000.ogg    exactly test_seconds: 0–2 voices, noise at −5…20 dB SNR, gain, low-pass, room
out_dir/test_answers.csv       id,fake,real         (multi-hot 0/1)
out_dir/sample_submission.csv  id,fake,real = 0.5
out_dir/unlabeled_data/UNLABEL_00000.ogg  test-like, no labels
```
Same layout as `voices-dev` (CRLF CSVs, OGG Vorbis). Audio is rendered from `plan_competition`, so the
same seed gives byte-identical CSVs and identical decoded audio (OGG files differ only in their random
stream serial number).
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ensemble.demo.plan import LABELS, CompetitionPlan, DemoSpec, TestClip, TrainClip, plan_competition
from ensemble.demo.spectral import coloured_noise, lowpass, reverb, rms
from ensemble.demo.voices import synth_voice
from ensemble.errors import EnsError, ExistsError
from ensemble.progress import Progress, emit

__all__ = ["generate_competition", "render_test_clip", "render_train_clip", "synth_voice"]

FOLDERS = {"train": "TRAIN_", "test": "TEST_", "unlabeled_data": "UNLABEL_"}
FORMATS = (("ogg", "OGG", "VORBIS"), ("flac", "FLAC", "PCM_16"), ("wav", "WAV", "PCM_16"))


def generate_competition(
    out_dir: Path,
    spec: DemoSpec = DemoSpec(),
    *,
    with_group: bool = False,
    overwrite: bool = False,
    workers: int | None = None,
    progress: Progress | None = None,
) -> Path:
    """Render the seeded demo dataset `spec` asks for into `out_dir` and return it.

    `with_group` adds a `group` column (speaker id) to train.csv for grouped folds. An existing dataset
    in `out_dir` is replaced only with `overwrite`. Progress: one "audio" event per file.
    """
    out = Path(out_dir)
    if (out / "train.csv").exists() and not overwrite:
        raise ExistsError(f"{out / 'train.csv'}: a dataset already exists there; pass overwrite=True (--force)")
    plan = plan_competition(spec)
    sr = spec.sr
    ext, fmt, subtype = _audio_format(sr)
    for folder, prefix in FOLDERS.items():
        (out / folder).mkdir(parents=True, exist_ok=True)
        _remove_stale(out / folder, prefix)
    jobs: list[tuple[Path, Callable[[], np.ndarray]]] = []
    for clip in plan.train:
        jobs.append((out / "train" / f"{clip.id}.{ext}", _bind(render_train_clip, clip, plan)))
    for folder, clips in (("test", plan.test), ("unlabeled_data", plan.unlabeled)):
        for clip in clips:
            jobs.append((out / folder / f"{clip.id}.{ext}", _bind(render_test_clip, clip, plan)))

    def work(job: tuple[Path, Callable[[], np.ndarray]]) -> None:
        path, render = job
        _write_audio(path, render(), sr, fmt, subtype)

    with ThreadPoolExecutor(max_workers=workers or min(2, os.cpu_count() or 1)) as pool:
        for done, _ in enumerate(pool.map(work, jobs), start=1):
            emit(progress, "audio", done=done, total=len(jobs))
    _write_tables(out, plan, ext, with_group)
    _write_readme(out, plan, ext)
    return out


def render_train_clip(clip: TrainClip, plan: CompetitionPlan) -> np.ndarray:
    """A clean clip: one voice, the clip's gain and band limit, a faint noise floor over silence."""
    rng = np.random.default_rng(clip.seed)
    y = synth_voice(clip.kind, clip.seconds, plan.sr, rng, speaker=plan.speakers[clip.speaker]).astype(float)
    if clip.lowpass:
        y = lowpass(y, plan.sr, clip.lowpass)
    y *= 10.0 ** (clip.gain_db / 20.0)
    y += 10.0 ** (rng.uniform(-80.0, -65.0) / 20.0) * rng.standard_normal(len(y))
    return _limit(y)


def render_test_clip(clip: TestClip, plan: CompetitionPlan) -> np.ndarray:
    """A test-like clip of exactly `plan.test_seconds`: placed voices, room, noise, low-pass, gain."""
    rng = np.random.default_rng(clip.seed)
    sr = plan.sr
    n = int(round(plan.test_seconds * sr))
    speech = np.zeros(n)
    active = np.zeros(n, dtype=bool)
    for v in clip.voices:
        voice = synth_voice(v.kind, v.seconds, sr, np.random.default_rng(v.seed), speaker=plan.speakers[v.speaker])
        start = min(int(round(v.offset * sr)), n)
        stop = min(start + len(voice), n)
        speech[start:stop] += voice[: stop - start] * 10.0 ** (v.gain_db / 20.0)
        active[start:stop] = True
    if clip.rt60:
        speech = reverb(speech, sr, clip.rt60, float(rng.uniform(0.2, 0.6)), rng)
    noise = _background(n, sr, clip, rng)
    level = rms(speech[active]) / 10.0 ** (clip.snr_db / 20.0) if active.any() else 1.0
    y = speech + level * noise
    if clip.lowpass:
        y = lowpass(y, sr, clip.lowpass)
    y *= 10.0 ** ((-25.0 + clip.gain_db) / 20.0) / max(rms(y), 1e-9)
    return _limit(y)


def _background(n: int, sr: int, clip: TestClip, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS background: coloured noise, sometimes slowly pulsing, sometimes with mains hum."""
    noise = coloured_noise(n, sr, clip.noise_alpha, rng)
    t = np.arange(n, dtype=np.float32) / np.float32(sr)
    if rng.random() < 0.3:
        rate, phase = rng.uniform(0.1, 2.0), rng.uniform(0, 2 * np.pi)
        noise *= 1.0 + 0.5 * np.sin(np.float32(2 * np.pi * rate) * t + np.float32(phase))
    if clip.hum:
        mains = float(rng.choice([50.0, 60.0]))
        phases = rng.uniform(0, 2 * np.pi, 5)
        hum = sum(np.sin(np.float32(2 * np.pi * mains * h) * t + np.float32(phases[h - 1])) / h for h in range(1, 6))
        noise = noise + clip.hum * hum / rms(hum)
    return noise / rms(noise)


def _bind(render: Callable, clip, plan: CompetitionPlan) -> Callable[[], np.ndarray]:
    return lambda: render(clip, plan)


def _limit(y: np.ndarray) -> np.ndarray:
    """Scale down rather than clip when a loud draw would exceed −1 dBFS (Vorbis overshoots a little)."""
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > 0.89:
        y = y * (0.89 / peak)
    return y.astype(np.float32)


def _audio_format(sr: int) -> tuple[str, str, str]:
    """OGG Vorbis as in the contest; FLAC, then WAV, where this libsndfile cannot write it."""
    import soundfile as sf

    errors = []
    for ext, fmt, subtype in FORMATS:
        try:
            buf = io.BytesIO()
            sf.write(buf, np.zeros(sr // 10, dtype=np.float32), sr, format=fmt, subtype=subtype)
            if ext != "ogg":
                why = "; ".join(errors)
                warnings.warn(f"cannot write OGG Vorbis ({why}); the demo writes .{ext} instead", stacklevel=3)
            return ext, fmt, subtype
        except Exception as err:  # libsndfile builds differ in what they can write
            errors.append(f"{fmt}: {err}")
    raise EnsError(f"soundfile: this libsndfile can write none of OGG, FLAC, WAV ({'; '.join(errors)})")


def _write_audio(path: Path, y: np.ndarray, sr: int, fmt: str, subtype: str) -> None:
    import soundfile as sf

    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(tmp, y, sr, format=fmt, subtype=subtype)
    os.replace(tmp, path)


def _remove_stale(folder: Path, prefix: str) -> None:
    """Remove audio a previous, larger demo left behind (only files this generator names)."""
    for ext, _, _ in FORMATS:
        for path in folder.glob(f"{prefix}*.{ext}"):
            path.unlink()


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.getvalue().encode())
    os.replace(tmp, path)


def _write_tables(out: Path, plan: CompetitionPlan, ext: str, with_group: bool) -> None:
    header = ["id", "path", "label"] + (["group"] if with_group else [])
    rows = [
        [c.id, f"./train/{c.id}.{ext}", c.kind] + ([plan.speaker_ids[c.speaker]] if with_group else [])
        for c in plan.train
    ]
    _write_csv(out / "train.csv", header, rows)
    _write_csv(out / "test.csv", ["id", "path"], [[c.id, f"./test/{c.id}.{ext}"] for c in plan.test])
    _write_csv(out / "sample_submission.csv", ["id", *LABELS], [[c.id] + [0.5] * len(LABELS) for c in plan.test])
    answers = [[c.id] + [c.labels[label] for label in LABELS] for c in plan.test]
    _write_csv(out / "test_answers.csv", ["id", *LABELS], answers)


def _write_readme(out: Path, plan: CompetitionPlan, ext: str) -> None:
    counts = {k: sum(c.kind == k for c in plan.train) for k in ("real", "fake")}
    combos = [sum(tuple(c.labels.values()) == key for c in plan.test) for key in ((0, 0), (0, 1), (1, 0), (1, 1))]
    text = (
        "# ens demo dataset (synthetic)\n\n"
        "Made by `ensemble.demo.synth.generate_competition`: speech-like \"real\" voices (glottal pulses, jitter,\n"
        "moving formants, breath, fricatives) and vocoder-like \"fake\" ones (flat or quantised pitch, buzzy\n"
        "pulses, smoothed envelopes, smeared phase, band limits). Not speech; for trying ens end to end.\n\n"
        f"- `train.csv`, `train/*.{ext}`: {counts['real']} real + {counts['fake']} fake clean clips, 0.8–4 s, "
        f"{plan.sr} Hz mono\n"
        f"- `test.csv`, `test/*.{ext}`: {len(plan.test)} clips of exactly {plan.test_seconds:g} s with 0–2 voices, "
        "noise at −5…20 dB SNR, random gain, some low-pass and reverberation\n"
        f"- `test_answers.csv`: `id,fake,real` ({' / '.join(map(str, combos))} clips for 00 / 01 / 10 / 11)\n"
        "- `sample_submission.csv`: `id,fake,real` = 0.5\n"
        f"- `unlabeled_data/*.{ext}`: {len(plan.unlabeled)} test-like clips without labels\n"
    )
    tmp = out / ".README.md.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out / "README.md")
