"""Decoding real files: formats, rates, stereo, resampling, the cache and errors naming the path."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from ensemble.audio.load import WaveStore, audio_duration, load_audio
from ensemble.errors import ConfigError, DataError


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(wave: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(wave * np.hanning(wave.size)))
    return float(np.fft.rfftfreq(wave.size, 1 / sr)[np.argmax(spec)])


FILES = [("a.wav", 8000, "WAV"), ("b.flac", 22050, "FLAC"), ("c.ogg", 44100, "OGG")]


@pytest.fixture
def stereo_files(tmp_path):
    paths = []
    for name, sr, fmt in FILES:
        left, right = sine(440, sr, 1.5), sine(440, sr, 1.5, amp=0.1)
        sf.write(tmp_path / name, np.stack([left, right], axis=1), sr, format=fmt)
        paths.append(tmp_path / name)
    return paths


@pytest.mark.parametrize("target_sr", [16000, 22050])
def test_every_format_decodes_to_mono_float32_at_the_target_rate(stereo_files, target_sr):
    for path in stereo_files:
        wave = load_audio(path, target_sr)
        assert wave.dtype == np.float32 and wave.ndim == 1
        assert abs(wave.size - 1.5 * target_sr) <= 2
        assert abs(peak_hz(wave, target_sr) - 440) < 2, path.name  # resampling keeps the pitch
        # stereo → mono by the mean of the channels: amplitude (0.5 + 0.1) / 2
        rms = np.sqrt(np.mean(wave[target_sr // 4 : -target_sr // 4] ** 2))
        assert rms == pytest.approx(0.3 / np.sqrt(2), rel=0.03), path.name


def test_mono_wav_at_the_same_rate_is_returned_unchanged(tmp_path):
    wave = sine(1000, 16000, 0.5)
    sf.write(tmp_path / "x.wav", wave, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(tmp_path / "x.wav", 16000), wave)


def test_stereo_mean_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.uniform(-0.5, 0.5, size=(1000, 2)).astype(np.float32)
    sf.write(tmp_path / "s.wav", data, 8000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "s.wav", 8000), data.mean(axis=1), atol=1e-7)


def test_missing_file_raises_data_error_naming_it(tmp_path):
    path = tmp_path / "nope" / "missing.ogg"
    with pytest.raises(DataError, match="missing.ogg"):
        load_audio(path, 16000)
    with pytest.raises(DataError, match="missing.ogg"):
        audio_duration(path)


def test_unreadable_file_raises_data_error_naming_it(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_text("this is not audio")
    with pytest.raises(DataError, match="broken.wav.*accepted"):
        load_audio(path, 16000)
    with pytest.raises(DataError, match="folder"):
        load_audio(tmp_path, 16000)


def test_bad_rate_is_a_config_error(stereo_files):
    with pytest.raises(ConfigError, match="sr=0"):
        load_audio(stereo_files[0], 0)


def test_store_decodes_each_file_once_when_caching(stereo_files):
    store = WaveStore(stereo_files, 16000)
    first = store[2]
    stereo_files[2].unlink()  # a second decode would now fail
    assert store[2] is first and store[-1] is first
    assert not first.flags.writeable  # shared arrays cannot be edited by one caller
    uncached = WaveStore(stereo_files, 16000, cache=False)
    uncached[0]
    with pytest.raises(DataError, match="c.ogg"):
        uncached[2]


def test_store_len_index_errors_and_durations(stereo_files):
    store = WaveStore(stereo_files, 16000)
    assert len(store) == 3
    with pytest.raises(IndexError):
        store[3]
    before = store.duration_seconds()  # from headers
    calls = []
    store.preload(progress=lambda e: calls.append((e["done"], e["total"])))
    assert calls[-1] == (3, 3)
    np.testing.assert_allclose(before, [1.5, 1.5, 1.5], atol=1e-3)
    np.testing.assert_allclose(store.duration_seconds(), before, atol=1e-3)  # from the cache


def test_cache_is_bounded_and_evicts_the_least_recently_used(stereo_files):
    store = WaveStore(stereo_files, 16000)
    one = store[0].nbytes
    bounded = WaveStore(stereo_files, 16000, max_bytes=one * 2)
    first = bounded[0]
    bounded[1]
    assert bounded[0] is first  # cached, and now the most recently used
    bounded[2]  # over budget: evicts item 1, the least recently used
    assert bounded[0] is first
    assert set(bounded._waves) <= {0, 2} and bounded._bytes <= one * 2
    np.testing.assert_array_equal(bounded[1], store[1])


def test_a_wave_store_read_from_two_threads_keeps_one_copy_per_file(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    import soundfile as sf

    from ensemble.audio.load import WaveStore

    paths = []
    for i in range(6):
        paths.append(tmp_path / f"c{i}.wav")
        sf.write(paths[-1], np.full(1600 * (i + 1), 0.01 * (i + 1), dtype=np.float32), 16000)
    store = WaveStore(paths, 16000, max_bytes=3 * 1600 * 4 * 6)  # room for some, not all: evictions race too
    with ThreadPoolExecutor(4) as pool:
        waves = list(pool.map(lambda k: store[k % 6], range(600)))
    assert all(w.size == 1600 * (k % 6 + 1) and np.allclose(w, 0.01 * (k % 6 + 1), atol=1e-4)
               for k, w in enumerate(waves))
    assert store._bytes == sum(w.nbytes for w in store._waves.values()) <= store.max_bytes
