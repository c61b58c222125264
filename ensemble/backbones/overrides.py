"""`--model-config key=value`: overrides of a backbone's config, checked against the config before any
model is built.

Why: the fine-tuning recipes this tool follows turn config switches, not code — SpecAugment
(`apply_spec_augment`, `mask_time_prob`, `mask_feature_prob`), dropouts (`attention_dropout`,
`activation_dropout`, `hidden_dropout`, `final_dropout`), `layerdrop`, `classifier_proj_size`,
`use_weighted_layer_sum`. A key the config does not have, or a value of another type than the
config's own, is refused with one line (a typo must not train five folds of the default model).
The label keys are ens's own (they follow the competition's columns) and cannot be overridden.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import fields, is_dataclass
from typing import Any

from ensemble.errors import ConfigError

RESERVED = frozenset({"num_labels", "id2label", "label2id", "problem_type", "model_type", "architectures",
                      "sampling_rate"})


def config_keys(config: Any) -> list[str]:
    """The keys a config accepts: its dataclass fields, or a Hugging Face config's attributes."""
    if is_dataclass(config):
        return [f.name for f in fields(config)]
    return sorted(config.to_dict())


def _coerce(key: str, value: Any, default: Any) -> Any:
    """`value` in the type of the config's own `default`, or ConfigError naming the key and both types."""
    def wrong() -> ConfigError:
        kind = "list" if isinstance(default, (list, tuple)) else type(default).__name__
        return ConfigError(f"--model-config {key}={json.dumps(value)}: expected {kind} "
                           f"like the config's {json.dumps(default, default=str)}")

    if default is None:
        if not isinstance(value, (bool, int, float, str, list)) and value is not None:
            raise wrong()
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise wrong()
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong()
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong()
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise wrong()
        return value
    if isinstance(default, (list, tuple)):  # kept a list: run.json and options.json hold JSON
        if not isinstance(value, (list, tuple)):
            raise wrong()
        return [_coerce(key, v, default[0]) for v in value] if default else list(value)
    raise ConfigError(f"--model-config {key}: the config's value is a {type(default).__name__}; "
                      "only numbers, switches, text and lists can be overridden")


def check_overrides(config: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """`overrides` checked against `config` (keys it has, values of its types), coerced; ConfigError else."""
    known = config_keys(config)
    out = {}
    for key, value in overrides.items():
        if key in RESERVED:
            raise ConfigError(f"--model-config {key}: ens sets {key} itself (from the competition's labels "
                              "and the model); it cannot be overridden")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise ConfigError(f"--model-config {key}: {type(config).__name__} has no such key; {hint}"
                              f"it has {len(known)} keys (see the model's config.json)")
        out[key] = _coerce(key, value, getattr(config, key))
    return out


def apply_overrides(config: Any, overrides: dict[str, Any]) -> Any:
    """A new config with `overrides` (checked) applied; Hugging Face configs are rebuilt from their dict,
    so attributes derived in `__init__` (e.g. `num_feat_extract_layers` from `conv_dim`) follow."""
    checked = check_overrides(config, overrides)
    if not checked:
        return config
    if is_dataclass(config):
        from dataclasses import replace

        return replace(config, **checked)
    rebuilt = type(config).from_dict({**config.to_dict(), **checked})
    return rebuilt
