"""Crop/pad to a fixed length and inference windows that cover the whole clip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ensemble.audio.clip import fit_length, window_starts, windows
from ensemble.errors import ConfigError


def ramp(size: int) -> np.ndarray:
    return np.arange(1, size + 1, dtype=np.float32)  # no zeros: padding is visible


def test_deterministic_crop_is_centred_and_pad_goes_at_the_end():
    np.testing.assert_array_equal(fit_length(ramp(10), 4), ramp(10)[3:7])
    out = fit_length(ramp(3), 6)
    np.testing.assert_array_equal(out, [1, 2, 3, 0, 0, 0])
    np.testing.assert_array_equal(fit_length(ramp(5), 5), ramp(5))
    assert fit_length(np.zeros(0, np.float32), 4).tolist() == [0, 0, 0, 0]


def test_output_is_a_new_float32_array():
    wave = ramp(8)
    out = fit_length(wave, 8)
    out[0] = -1
    assert wave[0] == 1 and out.dtype == np.float32


def test_random_crop_and_pad_positions_vary_and_keep_the_content():
    rng = np.random.default_rng(0)
    starts, offsets = set(), set()
    for _ in range(50):
        crop = fit_length(ramp(100), 10, rng)
        assert crop.shape == (10,) and np.all(np.diff(crop) == 1)
        starts.add(int(crop[0]))
        pad = fit_length(ramp(4), 10, rng)
        nz = np.flatnonzero(pad)
        np.testing.assert_array_equal(pad[nz], ramp(4))
        assert nz[-1] - nz[0] == 3
        offsets.add(int(nz[0]))
    assert len(starts) > 20 and min(starts) >= 1 and max(starts) <= 91
    assert offsets == set(range(7))  # every pad position, first and last included


def test_random_positions_are_reproducible_from_the_seed():
    a = [fit_length(ramp(50), 7, np.random.default_rng(3)) for _ in range(2)]
    np.testing.assert_array_equal(a[0], a[1])


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 400), n=st.integers(1, 120), frac=st.floats(0.0, 1.0))
def test_windows_cover_the_whole_clip(size, n, frac):
    hop = max(1, round(frac * n))
    wave = ramp(size)
    win = windows(wave, n, hop)
    starts = window_starts(size, n, hop)
    assert win.shape == (starts.size, n) and win.dtype == np.float32
    if size <= n:
        np.testing.assert_array_equal(win[0], fit_length(wave, n))
        return
    covered = np.zeros(size, bool)
    for s, w in zip(starts, win):
        np.testing.assert_array_equal(w, wave[s : s + n])
        covered[s : s + n] = True
    assert covered.all() and starts[-1] == size - n
    assert np.all(np.diff(starts) <= hop) and np.all(np.diff(starts) > 0)


def test_bad_lengths_are_config_errors():
    with pytest.raises(ConfigError, match="n=0"):
        fit_length(ramp(3), 0)
    with pytest.raises(ConfigError, match="hop=0"):
        windows(ramp(30), 10, 0)
    with pytest.raises(ConfigError, match="hop=11.*skip"):
        windows(ramp(30), 10, 11)
    with pytest.raises(ConfigError, match="1-D"):
        fit_length(np.zeros((2, 3)), 4)
