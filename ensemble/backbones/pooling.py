"""How a wav2vec2-like classifier turns frame features `(batch, frames, dim)` into one vector per clip.

- `mean` (Hugging Face's head, ens's default): the mean over the valid frames.
- `attention`: self-attentive pooling — a small MLP scores each frame, the softmax over the valid
  frames weights them (frames that carry the artefact count more than silence).
- `stats`: statistics pooling (x-vector style) — the mean and the standard deviation over the valid
  frames, concatenated, so the classifier sees how much the frames vary, not only their average.
- `weighted`: the SUPERB recipe — a learned softmax-weighted sum of every layer's hidden states
  (`use_weighted_layer_sum` in the config), then the mean; lower layers carry more acoustic detail.

The frames are the projector's output (`classifier_proj_size` wide), as in Hugging Face's head; a
`use_weighted_layer_sum` config combines with every pooling. Families without frame features (AST
pools its [CLS] tokens, logmel-cnn its feature map) take `mean` only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ensemble.errors import ConfigError
from ensemble.registry import Registry

POOLINGS: Registry[str] = Registry("pooling")
for _name, _what in {"mean": "mean over valid frames", "attention": "attention-weighted frames",
                     "stats": "mean and standard deviation of the frames",
                     "weighted": "learned weighted sum of all layers' hidden states, then mean"}.items():
    POOLINGS.add(_name, _what)


def check_pooling(pooling: str, model_type: str) -> None:
    """Refuse an unknown pooling, or a pooling other than `mean` for a family without frame features."""
    from ensemble.backbones.families import WAV2VEC2_LIKE

    POOLINGS.get(pooling)
    if pooling != "mean" and model_type not in WAV2VEC2_LIKE:
        raise ConfigError(f"--pooling {pooling}: model type {model_type!r} has no frame features to pool "
                          f"(only the wav2vec2-like families do: {', '.join(WAV2VEC2_LIKE)}); use mean")


def pooled_logits_module(model: Any, takes_mask: bool, pooling: str) -> Any:
    """`forward(input_values[, attention_mask])` → logits, pooling the frames as `pooling` says.

    `model` is a Hugging Face `...ForSequenceClassification`; its encoder, projector and layer weights
    are used as they are; `stats` replaces its classifier by one twice as wide.
    """
    dim = model.config.classifier_proj_size
    if pooling == "stats":
        model.classifier = nn.Linear(2 * dim, model.config.num_labels)
    if pooling not in ("attention", "stats"):
        raise ConfigError(f"pooling {pooling!r} is Hugging Face's own head (mean over frames), not a pooled module")
    pool = _AttentionPool(dim) if pooling == "attention" else _StatsPool()

    class PooledLogits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.pool = pool

        def forward(self, input_values: Any, attention_mask: Any = None) -> Any:
            mask = attention_mask if takes_mask else None
            weighted = bool(model.config.use_weighted_layer_sum)
            out = model.base_model(input_values, attention_mask=mask, output_hidden_states=weighted)
            if weighted:
                stacked = torch.stack(out.hidden_states, dim=1)
                norm = torch.softmax(model.layer_weights, dim=-1)
                hidden = (stacked * norm.view(-1, 1, 1)).sum(dim=1)
            else:
                hidden = out.last_hidden_state
            hidden = model.projector(hidden)
            if mask is None:
                frames = torch.ones(hidden.shape[:2], dtype=hidden.dtype, device=hidden.device)
            else:
                frames = model._get_feature_vector_attention_mask(hidden.shape[1], mask).to(hidden.dtype)
            return model.classifier(self.pool(hidden, frames))

    return PooledLogits()


def _masked_mean(hidden: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    return (hidden * frames.unsqueeze(-1)).sum(dim=1) / frames.sum(dim=1, keepdim=True).clamp(min=1.0)


class _StatsPool(nn.Module):
    def forward(self, hidden: Any, frames: Any) -> Any:
        mean = _masked_mean(hidden, frames)
        var = _masked_mean((hidden - mean.unsqueeze(1)) ** 2, frames)
        return torch.cat([mean, torch.sqrt(var + 1e-5)], dim=-1)


class _AttentionPool(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1))

    def forward(self, hidden: Any, frames: Any) -> Any:
        scores = self.score(hidden).squeeze(-1)
        scores = scores.masked_fill(frames <= 0, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=1)
        return (hidden * weights.unsqueeze(-1)).sum(dim=1)
