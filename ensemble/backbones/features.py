"""Per-clip summary features computed by a torch module that exports to ONNX: the classical families' front end.

`ClipFeatures` maps a waveform batch `(batch, samples)` to `(batch, n_features)` float32: log-mel band
means and deviations (all frames, and the active frames only), MFCC means, deviations and delta
deviations, spectral shape per frame (centroid, spread, high-band share from the power spectrum; roll-off
band, flatness and flux over the mel bands) as mean and deviation, level (frame energy mean / deviation / max / min, clip RMS, peak, crest),
activity (share of frames within 20 and 40 dB of the loudest, zero-crossing rate), and pitch from the
cepstrum of each frame (its peak between 80 and 500 Hz: how periodic the frame is, and at what pitch;
how much it moves between neighbouring voiced frames: synthetic voices hold it steadier or wobble), and with
`FeatureSpec(embedding="dvector")` a pretrained speaker encoder's 256-dimensional d-vector
(`voice_embedding`). Plain ops only
(a strided conv1d with fixed DFT kernels, as the log-mel CNN's front end), so the same graph runs in
torch for training and inside the exported ONNX file; `CLIP_FEATURES_VERSION` changes whenever the
definition does, and is recorded in run.json and the ONNX metadata.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ensemble.backbones.logmel import dft_kernels, dft_power, mel_matrix
from ensemble.errors import ConfigError

CLIP_FEATURES_VERSION = "clip-features-3"
_EPS = 1e-10
_SHAPE = ("centroid_khz", "spread_khz", "rolloff_band", "log_flatness", "log_high_share", "flux")
_LEVEL = ("energy_db_mean", "energy_db_std", "energy_db_max", "energy_db_min", "rms_db", "peak_db", "crest_db")
_ACTIVITY = ("active20", "active40", "zcr")
_PITCH = ("cpp_mean", "cpp_std", "cpp_max", "voiced_share", "log_f0_mean", "log_f0_std", "f0_jump_mean")
PITCH_HZ = (80.0, 500.0)  # the cepstral peak is searched between these pitches
EMBEDDING_DIMS = {"dvector": 256}  # FeatureSpec.embedding → its width (`voice_embedding`)


@dataclass(frozen=True)
class FeatureSpec:
    """The front end's parameters (STFT, mel bands, MFCCs); stored with every classical model."""

    sampling_rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 64
    n_mfcc: int = 20
    high_hz: float = 4000.0
    version: str = CLIP_FEATURES_VERSION
    embedding: str = ""  # a pretrained voice embedding appended to the summary features: "" or "dvector"

    def to_dict(self) -> dict:
        out = asdict(self)
        if not self.embedding:  # the summary features alone: recorded as before the embedding existed
            del out["embedding"]
        return out

    def names(self) -> list[str]:
        """Feature names in column order."""
        mel = [f"mel{i}_{s}" for s in ("mean", "std", "active_mean") for i in range(self.n_mels)]
        mfcc = [f"mfcc{i}_{s}" for s in ("mean", "std", "delta_std") for i in range(self.n_mfcc)]
        shape = [f"{n}_{s}" for n in _SHAPE for s in ("mean", "std")]
        embedding = [f"{self.embedding}{i}" for i in range(EMBEDDING_DIMS[self.embedding])] if self.embedding else []
        return mel + mfcc + shape + list(_LEVEL) + list(_ACTIVITY) + list(_PITCH) + embedding


def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II, `(n_in, n_out)`: log-mel frames @ it = MFCCs."""
    n = np.arange(n_in)[:, None]
    k = np.arange(n_out)[None, :]
    m = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    m[:, 0] /= np.sqrt(2.0)
    return m.astype(np.float32)


def cepstrum_matrix(sampling_rate: int, n_fft: int, pitch_hz: tuple[float, float] = PITCH_HZ) -> tuple[np.ndarray, int]:
    """`(n_fft // 2 + 1, lags)` real inverse DFT onto the quefrencies of pitches in `pitch_hz` (log power @
    it = the cepstrum there), and the first lag in samples."""
    lo = int(np.ceil(sampling_rate / pitch_hz[1]))
    hi = min(int(np.floor(sampling_rate / pitch_hz[0])), n_fft // 2)
    k = np.arange(n_fft // 2 + 1)[:, None]
    lags = np.arange(lo, hi + 1)[None, :]
    fold = np.where((k == 0) | (k == n_fft // 2), 1.0, 2.0)  # the one-sided spectrum counts inner bins twice
    return (np.cos(2 * np.pi * k * lags / n_fft) * fold / n_fft).astype(np.float32), lo


def _masked_mean_std(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and deviation of `x (b, frames)` over the frames where `mask` is 1 (0 and 0 where none is)."""
    count = mask.sum(dim=1).clamp(min=1.0)
    mean = (x * mask).sum(dim=1) / count
    var = (((x - mean.unsqueeze(1)) ** 2) * mask).sum(dim=1) / count
    return mean, torch.sqrt(var + 1e-12)


def _mean_std(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x.mean(dim=dim)
    var = ((x - mean.unsqueeze(dim)) ** 2).mean(dim=dim)
    return mean, torch.sqrt(var + 1e-12)


class ClipFeatures(nn.Module):
    """Waveforms `(batch, samples)` → per-clip features `(batch, len(spec.names()))`; no parameters."""

    def __init__(self, spec: FeatureSpec) -> None:
        super().__init__()
        self.spec = spec
        self.pad = spec.n_fft // 2
        self.n_freq = spec.n_fft // 2 + 1
        freqs = np.linspace(0, spec.sampling_rate / 2, self.n_freq).astype(np.float32)
        self.register_buffer("kernels", torch.from_numpy(dft_kernels(spec.n_fft)), persistent=False)
        self.register_buffer("window", torch.hann_window(spec.n_fft, periodic=True), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_matrix(spec.sampling_rate, spec.n_fft, spec.n_mels)),
                             persistent=False)
        self.register_buffer("dct", torch.from_numpy(dct_matrix(spec.n_mels, spec.n_mfcc)), persistent=False)
        f_khz = freqs / 1000.0
        moments = np.stack([np.ones_like(f_khz), f_khz, f_khz ** 2, (freqs >= spec.high_hz)], axis=1)
        self.register_buffer("moments", torch.from_numpy(moments.astype(np.float32)), persistent=False)
        cepstrum, self.first_lag = cepstrum_matrix(spec.sampling_rate, spec.n_fft)
        self.register_buffer("cepstrum", torch.from_numpy(cepstrum), persistent=False)
        self.voice = None
        if spec.embedding:
            from ensemble.backbones.voice_embedding import HOP, N_FFT, SAMPLING_RATE, VoiceEmbedding

            if spec.embedding not in EMBEDDING_DIMS or (spec.sampling_rate, spec.n_fft, spec.hop_length) != (
                    SAMPLING_RATE, N_FFT, HOP):
                raise ConfigError(f"embedding {spec.embedding!r}: the known ones are {sorted(EMBEDDING_DIMS)}, on "
                                  f"{SAMPLING_RATE} Hz frames of {N_FFT} samples every {HOP}")
            self.voice = VoiceEmbedding()

    def power(self, waves: torch.Tensor) -> torch.Tensor:
        """Power spectrogram `(b, freq, frames)`: an FFT in torch, fixed DFT kernels (a conv1d) in ONNX
        (the same Hann-windowed, zero-padded frames; the two agree to float32 rounding)."""
        if torch.onnx.is_in_onnx_export():
            return dft_power(waves, self.kernels, self.spec.hop_length)
        spec = torch.stft(F.pad(waves, (self.pad, self.pad)), self.spec.n_fft, self.spec.hop_length,
                          window=self.window, center=False, return_complex=True)
        return spec.real ** 2 + spec.imag ** 2

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        power = self.power(waves)  # (b, freq, frames)
        logmel = torch.log(torch.matmul(power.transpose(1, 2), self.mel) + 1e-6)  # (b, frames, mels)
        energy = 10.0 * torch.log10(power.mean(dim=1) + _EPS)  # (b, frames), dB
        peak = energy.max(dim=1, keepdim=True).values
        active = (energy > peak - 20.0).to(waves.dtype)  # (b, frames)
        weights = active / active.sum(dim=1, keepdim=True).clamp(min=1.0)

        mel_mean, mel_std = _mean_std(logmel, 1)
        mel_active = (logmel * weights.unsqueeze(2)).sum(dim=1)
        mfcc = torch.matmul(logmel, self.dct)  # (b, frames, n_mfcc)
        mfcc_mean, mfcc_std = _mean_std(mfcc, 1)
        _, delta_std = _mean_std(mfcc[:, 1:] - mfcc[:, :-1], 1)

        moments = torch.matmul(power.transpose(1, 2), self.moments)  # (b, frames, 4): Σp, Σpf, Σpf², Σp·high
        total = moments[..., 0] + _EPS
        centroid = moments[..., 1] / total
        spread = torch.sqrt(F.relu(moments[..., 2] / total - centroid ** 2) + 1e-12)
        mel_power = torch.exp(logmel)  # band powers (+1e-6): roll-off and flatness over mel bands
        mel_total = mel_power.sum(dim=2, keepdim=True)
        rolloff = (torch.cumsum(mel_power, dim=2) < 0.85 * mel_total).to(waves.dtype).sum(dim=2)
        flatness = logmel.mean(dim=2) - torch.log(mel_power.mean(dim=2))
        high_share = torch.log(moments[..., 3] / total + 1e-6)
        flux = F.relu(logmel[:, 1:] - logmel[:, :-1]).mean(dim=2)
        flux = torch.cat([flux, flux[:, -1:]], dim=1)
        shape = torch.stack([centroid, spread, rolloff, flatness, high_share, flux], dim=2)  # (b, frames, 6)
        shape_mean, shape_std = _mean_std(shape, 1)
        shape_stats = torch.stack([shape_mean, shape_std], dim=2).flatten(1)  # mean, std per shape feature

        e_mean, e_std = _mean_std(energy, 1)
        rms_db = 10.0 * torch.log10((waves ** 2).mean(dim=1) + _EPS)
        peak_db = 20.0 * torch.log10(waves.abs().max(dim=1).values + 1e-5)
        level = torch.stack([e_mean, e_std, peak.squeeze(1), energy.min(dim=1).values, rms_db, peak_db,
                             peak_db - rms_db], dim=1)
        zcr = ((waves[:, 1:] * waves[:, :-1]) < 0).to(waves.dtype).mean(dim=1)
        activity = torch.stack([active.mean(dim=1), (energy > peak - 40.0).to(waves.dtype).mean(dim=1), zcr], dim=1)
        parts = [mel_mean, mel_std, mel_active, mfcc_mean, mfcc_std, delta_std, shape_stats, level, activity,
                 self._pitch(power, active)]
        if self.voice is not None:
            parts.append(self.voice(waves, power))  # the same frames: its STFT is this one
        return torch.cat(parts, dim=1)

    def _pitch(self, power: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """Cepstral pitch statistics `(b, len(_PITCH))`: the peak's prominence over the active frames; pitch
        and its frame-to-frame moves over the voiced ones (active, prominence above the clip's mean)."""
        ceps = torch.matmul(torch.log(power.transpose(1, 2) + _EPS), self.cepstrum)  # (b, frames, lags)
        peak, lag = ceps.max(dim=2)
        cpp = peak - ceps.mean(dim=2)  # prominence of the cepstral peak: periodicity
        cpp_mean, cpp_std = _masked_mean_std(cpp, active)
        cpp_max = (cpp * active - 1e3 * (1.0 - active)).max(dim=1).values
        voiced = active * (cpp > cpp_mean.unsqueeze(1)).to(power.dtype)
        log_f0 = torch.log(self.spec.sampling_rate / (lag.to(power.dtype) + self.first_lag))
        f0_mean, f0_std = _masked_mean_std(log_f0, voiced)
        pairs = voiced[:, 1:] * voiced[:, :-1]
        jump = (log_f0[:, 1:] - log_f0[:, :-1]).abs()
        jump_mean = (jump * pairs).sum(dim=1) / pairs.sum(dim=1).clamp(min=1.0)
        voiced_share = voiced.sum(dim=1) / active.sum(dim=1).clamp(min=1.0)
        return torch.stack([cpp_mean, cpp_std, cpp_max, voiced_share, f0_mean, f0_std, jump_mean], dim=1)


def clip_features(module: ClipFeatures, waves: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Features of a `(n, samples)` float32 batch with torch (no grad), `(n, n_features)` float32."""
    out = []
    with torch.no_grad():
        for start in range(0, len(waves), batch_size):
            out.append(module(torch.from_numpy(np.ascontiguousarray(waves[start:start + batch_size]))).numpy())
    return np.concatenate(out).astype(np.float32)
