"""`--freeze`: which weights of a backbone stay fixed while it is fine-tuned.

- `none`: every weight trains.
- `feature-encoder`: the conv feature encoder (AST: the patch embedding) is fixed — the usual recipe
  for pretrained wav2vec2-like checkpoints, and ens's default for them.
- `first:N`: everything below transformer layer N is fixed — the feature encoder, the feature
  projection and positional embedding, and layers 0..N-1; layers N.. and what follows them (a final
  layer norm where the model applies it after the stack) and the head train. The background experiment
  log froze the first 9 of 12. For logmel-cnn, N counts conv blocks (the input norm is fixed too).
- `all-but-head`: the whole backbone is fixed; only the head (projector, pooling, classifier, layer
  weights) trains — a linear probe of the pretrained features.

BatchNorm running statistics (logmel-cnn) are buffers, not weights: they still follow the data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ensemble.errors import ConfigError

SCHEMES = ("none", "feature-encoder", "first:N", "all-but-head")


def parse_freeze(spec: str) -> tuple[str, int]:
    """`spec` as (scheme, N); N is 0 except for `first:N`. Unknown spellings raise ConfigError."""
    found = re.fullmatch(r"first:(\d+)", spec.strip())
    if found and int(found.group(1)) >= 1:
        return "first", int(found.group(1))
    if spec in ("none", "feature-encoder", "all-but-head"):
        return spec, 0
    raise ConfigError(f"--freeze {spec!r}: choose one of {', '.join(SCHEMES)} (N ≥ 1, e.g. first:9)")


def layer_count(config: Any, model_type: str) -> int:
    """Transformer layers (logmel-cnn: conv blocks) that `first:N` counts."""
    if model_type == "logmel-cnn":
        return len(config.channels)
    return int(getattr(config, "num_hidden_layers", 0))


def check_freeze(spec: str, model_type: str, config: Any) -> None:
    """Refuse a scheme the family cannot do, before any model is built."""
    from ensemble.backbones.families import get_family

    scheme, n = parse_freeze(spec)
    if get_family(model_type).trainer != "torch":
        if scheme != "none":
            raise ConfigError(f"--freeze {spec}: {model_type} is fitted, not trained by gradients; "
                              "only none applies")
        return
    if scheme == "feature-encoder" and model_type == "logmel-cnn":
        raise ConfigError("--freeze feature-encoder: logmel-cnn's front end has no trainable weights; "
                          "use first:N (conv blocks) or all-but-head")
    total = layer_count(config, model_type)
    if scheme == "first" and n > total:
        raise ConfigError(f"--freeze first:{n}: {model_type} has {total} "
                          f"{'conv blocks' if model_type == 'logmel-cnn' else 'transformer layers'}")


def apply_freeze(inner: Any, model_type: str, spec: str) -> None:
    """Freeze `inner` (the family's own module: a Hugging Face classifier or the LogMelCNN) in place."""
    from ensemble.backbones.families import freeze_feature_encoder

    scheme, n = parse_freeze(spec)
    if scheme == "none":
        return
    if scheme == "feature-encoder":
        freeze_feature_encoder(inner, model_type)
        return
    if model_type == "logmel-cnn":
        backbone, stack, after = inner, list(inner.blocks.children()), []
        frozen = [inner.input_norm, *stack[:4 * n]] if scheme == "first" else [inner.input_norm, inner.blocks]
    else:
        backbone = inner.base_model
        stack, after = _layers(backbone), _after_layers(backbone, inner.config)
        frozen = [backbone]
    for module in frozen:
        module.requires_grad_(False)
    if scheme == "first" and model_type != "logmel-cnn":
        for module in [*stack[n:], *after]:
            module.requires_grad_(True)


def _layers(backbone: Any) -> list[Any]:
    """The transformer stack of a Hugging Face audio backbone (AST holds it directly, SEW-D one level
    deeper than the others)."""
    encoder = getattr(backbone, "encoder", None)
    for holder in (backbone, encoder, getattr(encoder, "encoder", None)):
        for attr in ("layers", "layer"):
            if holder is not None and isinstance(getattr(holder, attr, None), Iterable):
                return list(getattr(holder, attr))
    raise ConfigError(f"{type(backbone).__name__}: no transformer layers found to freeze")


def _after_layers(backbone: Any, config: Any) -> list[Any]:
    """Modules applied after the transformer stack (they train with the unfrozen layers)."""
    encoder = getattr(backbone, "encoder", None)
    after = []
    if hasattr(backbone, "layernorm"):  # AST
        after.append(backbone.layernorm)
    if getattr(config, "do_stable_layer_norm", False) and hasattr(encoder, "layer_norm"):
        after.append(encoder.layer_norm)
    if hasattr(encoder, "upsample"):  # SEW
        after.append(encoder.upsample)
    return after
