"""Augmented training batches: config parsing, determinism per (seed, epoch), targets, no leakage."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

from ensemble.audio import dsp
from ensemble.audio.augment import ITEMS, AugmentConfig, ExampleSampler
from ensemble.audio.load import WaveStore
from ensemble.errors import ConfigError, ContractError

SR = 8000
N = 2 * SR  # 2-s examples


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """12 voice-like clips of 0.5–3 s (tones with an envelope) written as real files; 2 labels."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(12):
        seconds = rng.uniform(0.5, 3.0)
        t = np.arange(int(seconds * SR)) / SR
        wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) * np.hanning(t.size)
        fmt = ("wav", "flac", "ogg")[i % 3]
        sf.write(root / f"c{i}.{fmt}", wave.astype(np.float32), (8000, 16000, 22050)[i % 3])
        paths.append(root / f"c{i}.{fmt}")
    return WaveStore(paths, SR)


@pytest.fixture(scope="module")
def targets():
    y = np.zeros((12, 2), np.float32)
    y[::2, 0] = 1  # even rows "fake"
    y[1::2, 1] = 1  # odd rows "real"
    return y


def only(**fields) -> AugmentConfig:
    return replace(AugmentConfig.none(), **fields)


# --- AugmentConfig ---------------------------------------------------------------------------


def test_spec_default_and_none():
    assert AugmentConfig.from_spec("default") == AugmentConfig()
    none = AugmentConfig.from_spec("none")
    assert all(getattr(none, p) == 0.0 for p in ITEMS.values())


def test_spec_items_switch_on_at_defaults_and_the_rest_off():
    cfg = AugmentConfig.from_spec("mix, noise,gain,shift")
    assert cfg.p_mix == AugmentConfig().p_mix > 0 and cfg.p_noise == AugmentConfig().p_noise
    assert cfg.p_shift > 0 and cfg.p_gain > 0
    assert cfg.p_empty == cfg.p_lowpass == cfg.p_reverb == cfg.p_background == 0


def test_spec_overrides():
    cfg = AugmentConfig.from_spec("default,p_mix=0.5,snr_db=0:10,noise_kinds=pink:brown")
    assert cfg.p_mix == 0.5 and cfg.snr_db == (0.0, 10.0) and cfg.noise_kinds == ("pink", "brown")
    assert AugmentConfig.from_spec("p_mix=0.9,mix").p_mix == 0.9


@pytest.mark.parametrize(
    "spec, message",
    [
        ("mix,echo", "item 'echo' is unknown; accepted: default, none, mix, empty, noise"),
        ("", "empty"),
        ("p_mix=2", "p_mix=2.0 is invalid; accepted: a probability"),
        ("p_mix=lots", "p_mix='lots' is not a number"),
        ("snr_db=20:0", "snr_db=.*low ≤ high"),
        ("noise_kinds=purple", "noise_kinds=.*white, pink, brown"),
        ("wobble=1", "field 'wobble' is unknown"),
        ("background", "'background' needs 'noise'"),
    ],
)
def test_spec_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        AugmentConfig.from_spec(spec)


def test_to_dict_is_json_and_round_trips():
    cfg = AugmentConfig.from_spec("default,p_mix=0.25")
    data = json.loads(json.dumps(cfg.to_dict()))
    assert AugmentConfig(**data) == cfg


# --- signal primitives ------------------------------------------------------------------------


def test_noise_colours_have_the_right_spectral_slope():
    rng = np.random.default_rng(1)
    n = 2**15
    noise = dsp.colored_noise(["white", "pink", "brown"], n, rng)
    np.testing.assert_allclose(np.sqrt(dsp.power(noise)), 1.0, rtol=1e-4)
    freq = np.fft.rfftfreq(n)[1:]
    psd = np.abs(np.fft.rfft(noise, axis=1))[:, 1:] ** 2
    band = (freq > 0.001) & (freq < 0.4)
    slopes = [np.polyfit(np.log(freq[band]), np.log(p[band]), 1)[0] for p in psd]
    np.testing.assert_allclose(slopes, [0.0, -1.0, -2.0], atol=0.1)


def test_noise_bank_rows_are_unit_rms_and_vary():
    rng = np.random.default_rng(2)
    bank = dsp.NoiseBank(["white", "brown"], 1000, rng, rows=2)
    out = bank.draw(np.array([0, 0, 1, 1]), rng)
    assert out.shape == (4, 1000) and out.dtype == np.float32
    np.testing.assert_allclose(np.sqrt(dsp.power(out)), 1.0, rtol=1e-4)
    assert not np.allclose(out[0], out[1])


def test_lowpass_removes_energy_above_the_cutoff_only_where_asked():
    rng = np.random.default_rng(3)
    x = dsp.colored_noise(["white"] * 2, SR, rng)
    out = dsp.lowpass(x, np.array([1000.0, np.nan]), SR)
    spec = np.abs(np.fft.rfft(out, axis=1)) ** 2
    freq = np.fft.rfftfreq(SR, 1 / SR)
    assert spec[0, freq > 1000].sum() < 1e-9 * spec[0].sum()
    assert spec[0, freq < 850].sum() == pytest.approx(
        (np.abs(np.fft.rfft(x[0])) ** 2)[freq < 850].sum(), rel=1e-3
    )
    np.testing.assert_array_equal(out[1], x[1])


# --- ExampleSampler ---------------------------------------------------------------------------


def collect(sampler, epoch, batch_size=5):
    xs, ys, srcs = [], [], []
    for x, y, s in sampler.epoch(epoch, batch_size):
        xs.append(x), ys.append(y), srcs.extend(s)
    return np.concatenate(xs), np.concatenate(ys), srcs


def test_batches_have_the_promised_shapes(store, targets):
    sampler = ExampleSampler(store, np.arange(12), targets, N, AugmentConfig(), seed=0)
    batches = list(sampler.epoch(0, 5))
    assert len(batches) == sampler.n_batches(5) == 3
    x, y, s = batches[0]
    assert x.shape == (5, N) and x.dtype == np.float32 and y.shape == (5, 2) and y.dtype == np.float32
    assert len(s) == 5 and batches[-1][0].shape == (2, N)
    assert np.isfinite(x).all() and np.abs(x).max() <= 0.99 + 1e-6


def test_same_seed_and_epoch_give_the_same_batches_whatever_ran_before(store, targets):
    make = lambda seed: ExampleSampler(store, np.arange(12), targets, N, AugmentConfig(), seed=seed)
    a = make(7)
    collect(a, 0)  # history must not matter (resume starts at epoch 1 in a new process)
    x1, y1, s1 = collect(a, 1)
    x2, y2, s2 = collect(make(7), 1)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert s1 == s2
    assert not np.array_equal(x1, collect(make(7), 2)[0])
    assert not np.array_equal(x1, collect(make(8), 1)[0])


def test_every_source_comes_from_indices_and_each_index_leads_once(store, targets):
    indices = np.array([0, 3, 4, 7, 9])
    cfg = replace(AugmentConfig(), p_mix=0.8, p_empty=0.0)
    sampler = ExampleSampler(store, indices, targets, N, cfg, seed=1)
    for epoch in range(6):
        _, _, sources = collect(sampler, epoch, batch_size=2)
        assert sorted(s[0] for s in sources) == sorted(indices)
        used = {i for s in sources for i in s}
        assert used <= set(indices.tolist()), epoch
        assert all(len(s) in (1, 2) and len(set(s)) == len(s) for s in sources)


def test_mix_targets_are_the_elementwise_max_of_the_sources(store, targets):
    cfg = only(p_mix=1.0)
    _, y, sources = collect(ExampleSampler(store, np.arange(12), targets, N, cfg, seed=2), 0)
    assert all(len(s) == 2 for s in sources)
    for row, src in zip(y, sources):
        np.testing.assert_array_equal(row, targets[src].max(axis=0))
    assert {tuple(r) for r in y} == {(1.0, 1.0), (1.0, 0.0), (0.0, 1.0)}  # both kinds of mix occur


def test_empty_examples_are_noise_with_zero_targets(store, targets):
    cfg = only(p_empty=1.0)
    x, y, sources = collect(ExampleSampler(store, np.arange(12), targets, N, cfg, seed=3), 0)
    assert sources == [[]] * 12 and not y.any()
    level = np.sqrt(dsp.power(x))
    assert (level > 1e-4).all()  # noise, not digital silence


def test_without_augmentation_an_example_is_the_clip_at_a_random_position(store, targets):
    sampler = ExampleSampler(store, np.arange(12), targets, N, AugmentConfig.none(), seed=4)
    x, y, sources = collect(sampler, 0)
    for row, yy, (s,) in zip(x, y, sources):
        wave = store[s]
        np.testing.assert_array_equal(yy, targets[s])
        if wave.size <= N:
            start = next(o for o in range(N - wave.size + 1) if np.array_equal(row[o : o + wave.size], wave))
            assert not row[:start].any() and not row[start + wave.size :].any()
        else:
            assert any(np.array_equal(row, wave[o : o + N]) for o in range(wave.size - N + 1))


def test_noise_is_added_at_the_requested_snr(tmp_path, targets):
    rng = np.random.default_rng(5)
    for i in range(4):  # clips of exactly N samples: the voice's position is known
        sf.write(tmp_path / f"v{i}.wav", (0.2 * rng.standard_normal(N)).astype(np.float32), SR, subtype="FLOAT")
    st = WaveStore([tmp_path / f"v{i}.wav" for i in range(4)], SR)
    for lo, hi in [(10.0, 10.0), (-5.0, 20.0)]:
        cfg = only(p_noise=1.0, snr_db=(lo, hi))
        x, _, sources = collect(ExampleSampler(st, np.arange(4), targets[:4], N, cfg, seed=6), 0, 4)
        for row, (s,) in zip(x, sources):
            snr = 10 * np.log10(dsp.power(st[s][None])[0] / dsp.power((row - st[s])[None])[0])
            assert lo - 0.05 <= snr <= hi + 0.05


def test_levels_follow_the_config_and_padding_is_never_digital_silence(store, targets):
    cfg = replace(AugmentConfig(), p_noise=0.5, level_db=(-30.0, -20.0))
    x, _, _ = collect(ExampleSampler(store, np.arange(12), targets, N, cfg, seed=9), 0)
    level = 10 * np.log10(dsp.power(x))
    assert (level <= -20.0 + 1e-3).all() and (level >= -30.0 - 1e-3).all()
    assert (np.abs(x) > 0).all()  # a faint noise floor fills the padding of the noiseless half


def test_codec_item_round_trips_through_vorbis(store, targets):
    assert AugmentConfig.from_spec("codec").p_codec > 0 == AugmentConfig().p_codec
    cfg = only(p_codec=1.0)
    a, _, s = collect(ExampleSampler(store, np.arange(12), targets, N, cfg, seed=4), 0)
    b, _, t = collect(ExampleSampler(store, np.arange(12), targets, N, AugmentConfig.none(), seed=4), 0)
    assert s == t  # the coded batch is the clean one, coded: same rng draws up to that step
    err = np.sqrt(dsp.power(a - b) / dsp.power(b))
    assert (err > 1e-4).all() and (err < 0.5).all()
    np.testing.assert_array_equal(a, collect(ExampleSampler(store, np.arange(12), targets, N, cfg, seed=4), 0)[0])


def test_background_bank_supplies_the_noise(store, targets, tmp_path):
    t = np.arange(3 * SR) / SR
    sf.write(tmp_path / "bg.wav", (0.1 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32), SR)
    cfg = only(p_noise=1.0, p_background=1.0, snr_db=(-5.0, -5.0))
    sampler = ExampleSampler(store, np.arange(12), targets, N, cfg, seed=7, background=WaveStore([tmp_path / "bg.wav"], SR))
    x, _, _ = collect(sampler, 0)
    spec = np.abs(np.fft.rfft(x, axis=1))
    freq = np.fft.rfftfreq(N, 1 / SR)
    assert np.all(np.abs(freq[spec.argmax(axis=1)] - 3000) < 5)


def test_sampler_errors(store, targets):
    cfg = AugmentConfig()
    with pytest.raises(ContractError, match=r"\(12, labels\)"):
        ExampleSampler(store, np.arange(3), targets[:3], N, cfg, seed=0)
    with pytest.raises(ContractError, match="out of range"):
        ExampleSampler(store, np.array([0, 12]), targets, N, cfg, seed=0)
    with pytest.raises(ContractError, match="empty"):
        ExampleSampler(store, np.array([], int), targets, N, cfg, seed=0)
    with pytest.raises(ConfigError, match="batch_size=0"):
        next(ExampleSampler(store, np.arange(2), targets, N, cfg, seed=0).epoch(0, 0))
