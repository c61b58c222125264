"""A pretrained speaker encoder as a per-clip feature front end: what a voice sounds like, learned from
thousands of speakers, for the classical families to add to their summary features.

The encoder is GE2E (Wan et al. 2018) as trained and shipped by Resemblyzer (Apache-2.0): a 3-layer LSTM
over 40-band mel spectrograms (25 ms windows, 10 ms steps, 16 kHz) whose last state, through a linear
layer and a ReLU, is a 256-dimensional unit vector (a "d-vector"). Only its weights file is used, read
with `torch.load(weights_only=True)`; the package's own code (and its dependencies) are never imported,
so `pip install --no-deps resemblyzer` is all it needs. A clip is levelled up to −30 dBFS as Resemblyzer
does, cut into 1.6-s windows every 0.8 s (ens pads shorter clips to `--max-seconds` before any front end), and its windows'
d-vectors are averaged and renormalised. Plain ops only, so the same module runs in torch for training
and inside the exported ONNX graph.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ensemble.errors import ConfigError

DVECTOR_VERSION = "ge2e-resemblyzer-0.1.4"
SAMPLING_RATE = 16000
N_FFT, HOP, N_MELS = 400, 160, 40
WINDOW_FRAMES, STEP_FRAMES = 160, 80
HIDDEN = 256
TARGET_DBFS = -30.0
MIN_SAMPLES = (WINDOW_FRAMES - 1) * HOP  # the shortest input that makes one window
INSTALL_HINT = "pip install --no-deps resemblyzer==0.1.4 (only its weights file is used)"


def weights_path() -> Path:
    """Resemblyzer's `pretrained.pt`, found without importing the package."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the d-vector front end needs Resemblyzer's weights: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not path.is_file():
        raise ConfigError(f"{path} is missing: reinstall with {INSTALL_HINT}")
    return path


def slaney_mel(sampling_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney-scale, area-normalised triangular mel filters `(n_fft // 2 + 1, n_mels)` (librosa's default,
    the filters the encoder was trained with)."""
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp

    def to_mel(hz: np.ndarray) -> np.ndarray:
        return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, hz / f_sp)

    def to_hz(mel: np.ndarray) -> np.ndarray:
        return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)

    fft_hz = np.linspace(0, sampling_rate / 2, n_fft // 2 + 1)
    mel_hz = to_hz(np.linspace(to_mel(np.array(0.0)), to_mel(np.array(sampling_rate / 2)), n_mels + 2))
    ramps = mel_hz[:, None] - fft_hz[None, :]
    gaps = np.diff(mel_hz)
    lower = -ramps[:-2] / gaps[:-1, None]
    upper = ramps[2:] / gaps[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    return weights.T.astype(np.float32)


class SpeakerEncoder(nn.Module):
    """Mel windows `(n, frames, 40)` → unit d-vectors `(n, 256)`: GE2E's LSTM, linear layer and ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, HIDDEN, num_layers=3, batch_first=True)
        self.linear = nn.Linear(HIDDEN, HIDDEN)
        state = torch.load(weights_path(), map_location="cpu", weights_only=True)
        weights = {k: v for k, v in state.get("model_state", {}).items() if k.startswith(("lstm.", "linear."))}
        expected = {k: tuple(v.shape) for k, v in self.state_dict().items()}
        if {k: tuple(v.shape) for k, v in weights.items()} != expected:
            raise ConfigError(f"{weights_path()} does not hold the GE2E encoder's weights: {INSTALL_HINT}")
        self.load_state_dict(weights)
        self.requires_grad_(False)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        embeds = F.relu(self.linear(hidden[-1]))
        return embeds / torch.sqrt((embeds ** 2).sum(dim=1, keepdim=True) + 1e-12)


class VoiceEmbedding(nn.Module):
    """Waveforms `(batch, samples)` at 16 kHz → the mean d-vector of their 1.6-s windows `(batch, 256)`."""

    def __init__(self) -> None:
        super().__init__()
        from ensemble.backbones.logmel import dft_kernels

        self.encoder = SpeakerEncoder()
        self.register_buffer("kernels", torch.from_numpy(dft_kernels(N_FFT)), persistent=False)
        self.register_buffer("mel", torch.from_numpy(slaney_mel(SAMPLING_RATE, N_FFT, N_MELS)), persistent=False)

    def forward(self, waves: torch.Tensor, power: torch.Tensor | None = None) -> torch.Tensor:
        """`power`: the waves' power spectrogram `(batch, 201, frames)` on 25-ms frames every 10 ms (centred),
        when the caller has computed it already; else it is computed here."""
        from ensemble.backbones.logmel import dft_power

        if not torch.onnx.is_in_onnx_export() and waves.shape[1] < MIN_SAMPLES:
            raise ConfigError(f"the d-vector front end needs clips of at least {MIN_SAMPLES / SAMPLING_RATE:.2f} s "
                              f"(one window); got {waves.shape[1]} samples: raise --max-seconds")
        rms = torch.sqrt((waves ** 2).mean(dim=1, keepdim=True) + 1e-12)
        gain = torch.clamp(10 ** (TARGET_DBFS / 20) / rms, min=1.0)  # level up only, as Resemblyzer
        power = dft_power(waves, self.kernels, HOP) if power is None else power
        power = power * (gain ** 2).unsqueeze(2)  # levelling the waves scales their power
        mels = torch.matmul(power.transpose(1, 2), self.mel)  # (b, frames, 40): power, not log (GE2E's input)
        # windows by a gather, not `unfold`: ONNX export needs the frame count as a graph value
        n_windows = (mels.shape[1] - WINDOW_FRAMES) // STEP_FRAMES + 1
        index = torch.arange(n_windows)[:, None] * STEP_FRAMES + torch.arange(WINDOW_FRAMES)[None, :]
        windows = mels[:, index]  # (b, n_windows, 160, 40)
        embeds = self.encoder(windows.reshape(-1, WINDOW_FRAMES, N_MELS))
        mean = embeds.reshape(waves.shape[0], -1, HIDDEN).mean(dim=1)
        return mean / torch.sqrt((mean ** 2).sum(dim=1, keepdim=True) + 1e-12)
