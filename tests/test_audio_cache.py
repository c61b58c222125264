"""The decode cache: bit-identical to decoding, keyed by content, validated on read, shared by stores."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import ensemble.audio.load as load_module
from ensemble.artifacts.workspace import Workspace
from ensemble.audio.cache import FORMAT, DecodeCache
from ensemble.audio.load import WaveStore, load_audio
from ensemble.errors import DataError


@pytest.fixture
def decodes(monkeypatch) -> Counter:
    """Spy on the decoder: path name → how many times it was decoded."""
    seen: Counter = Counter()
    original = load_module.decode_file

    def spy(path):
        seen[Path(path).name] += 1
        return original(path)

    monkeypatch.setattr(load_module, "decode_file", spy)
    return seen


@pytest.fixture
def clips(tmp_path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i, (sr, fmt) in enumerate([(32000, "OGG"), (22050, "FLAC"), (16000, "WAV")]):
        path = tmp_path / "audio" / f"c{i}.{fmt.lower()}"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, (rng.standard_normal((int(0.7 * sr), 2)) * 0.1).astype(np.float32), sr, format=fmt)
        paths.append(path)
    return paths


def test_cached_waves_are_bit_identical_and_decoded_once_per_rate(tmp_path, clips, decodes):
    cache = DecodeCache(tmp_path / "cache")
    for sr in (16000, 8000):
        for path in clips:
            first, again = cache.load(path, sr), DecodeCache(tmp_path / "cache").load(path, sr)  # a fresh process
            direct = load_audio(path, sr)
            assert first.dtype == again.dtype == np.float32
            assert first.tobytes() == again.tobytes() == direct.tobytes()
    # one decode per (clip, rate) for the cache, plus the direct decodes made for comparison
    assert decodes == {p.name: 4 for p in clips}
    assert len(list((tmp_path / "cache" / FORMAT).glob("*/*/*.npy"))) == 6


def test_entries_are_keyed_by_content_not_path(tmp_path, clips, decodes):
    cache = DecodeCache(tmp_path / "cache")
    cache.load(clips[0], 16000)
    copy = tmp_path / "elsewhere" / "renamed.ogg"
    copy.parent.mkdir()
    shutil.copy(clips[0], copy)
    assert cache.load(copy, 16000).tobytes() == cache.load(clips[0], 16000).tobytes()
    assert decodes == {clips[0].name: 1}
    sf.write(copy, np.zeros(8000, dtype=np.float32), 16000, format="OGG")  # edited: another entry
    assert not cache.load(copy, 16000).any()
    assert decodes == {clips[0].name: 1, "renamed.ogg": 1}


@pytest.mark.parametrize("damage", ["truncate", "float64", "2d", "nan", "object"])
def test_a_damaged_entry_is_decoded_again_and_replaced(tmp_path, clips, decodes, damage):
    cache = DecodeCache(tmp_path / "cache")
    good = cache.load(clips[0], 16000)
    entry = cache.entry(clips[0], 16000)
    if damage == "truncate":
        entry.write_bytes(entry.read_bytes()[:-100])
    elif damage == "float64":
        np.save(entry, good.astype(np.float64))
    elif damage == "2d":
        np.save(entry, good[None, :])
    elif damage == "nan":
        np.save(entry, np.full_like(good, np.nan))
    else:  # a pickled object array: must never be unpickled
        np.save(entry, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    assert cache.load(clips[0], 16000).tobytes() == good.tobytes()
    assert decodes == {clips[0].name: 2}
    assert np.load(entry, allow_pickle=False).tobytes() == good.tobytes()  # replaced by a valid entry


def test_a_missing_file_gives_the_decoders_error(tmp_path):
    with pytest.raises(DataError, match=r"audio file .*nope\.ogg not found"):
        DecodeCache(tmp_path / "cache").load(tmp_path / "nope.ogg", 16000)
    assert not (tmp_path / "cache").exists()


def test_stores_share_the_cache(tmp_path, clips, decodes):
    cache = DecodeCache(tmp_path / "cache")
    for _ in range(2):  # two runs (or folds, or processes), each with its own in-memory store
        store = WaveStore(clips, 16000, decoded=cache)
        waves = [store[i] for i in range(len(store))]
    assert decodes == {p.name: 1 for p in clips}
    assert all(not w.flags.writeable for w in waves)


def test_the_workspace_cache_can_move_or_be_switched_off(tmp_path, monkeypatch):
    ws = Workspace(tmp_path / "ws")
    monkeypatch.delenv("ENS_AUDIO_CACHE", raising=False)
    assert ws.audio_cache().root == tmp_path / "ws" / "cache" / "audio"
    monkeypatch.setenv("ENS_AUDIO_CACHE", str(tmp_path / "local-disk"))
    assert ws.audio_cache().root == tmp_path / "local-disk"
    monkeypatch.setenv("ENS_AUDIO_CACHE", "off")
    assert ws.audio_cache() is None
