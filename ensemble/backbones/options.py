"""The one options record of fine-tuning: what `ens finetune` trains with and `ens tune` searches around.

`FinetuneOptions.validate()` checks every value's type and range before anything is created (a folds
file, a test-like set, a run folder or a study), and names the option at fault, so a bad command-line
value or a `--config` value of the wrong type is one line, not a traceback from inside training.
"""

from __future__ import annotations

import math
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from ensemble.errors import ConfigError

KNOBS = ("freeze", "model_config", "schedule", "warmup", "hold", "weight_decay", "max_grad_norm", "pooling",
         "pseudo_label")
CLASS_WEIGHTS = ("none", "balanced")
MAX_CLIP_SECONDS = 3600.0  # a crop longer than an hour is a typo, not a clip


@dataclass
class FinetuneOptions:
    """Everything that shapes a run; stored in run.json so the run explains itself."""

    model: str
    name: str | None = None
    folds: int | None = None
    only_folds: list[int] | None = None
    epochs: int = 5
    lr: float | None = None  # None: 3e-5 for pretrained checkpoints, 1e-3 for named (random) configs
    batch_size: int = 16
    grad_accum: int | None = None
    max_seconds: float = 5.0
    augment: str = "default"
    device: str = "auto"
    seed: int = 0
    testlike_per_fold: int | None = None
    devices: int = 1  # processes training each fold together (DDP; one GPU each on CUDA)
    extra: dict = field(default_factory=dict)
    metric: str | None = None     # best-epoch metric; None: the workspace's (ens.toml) or the task's default
    class_weight: str = "none"    # multiclass: 'none' or 'balanced' (loss weights ∝ 1 / class count)
    # the fine-tuning knobs (README's table); at their defaults they stay out of `identity()`, so runs
    # started before the knobs existed still resume
    freeze: str | None = None  # None: feature-encoder for pretrained checkpoints, none for named configs
    model_config: dict = field(default_factory=dict)  # overrides of the backbone's config
    schedule: str = "cosine"
    warmup: float = 0.1
    hold: float = 0.0
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0  # 0: no clipping
    pooling: str = "mean"
    pseudo_label: float = 0.0  # classical families: refit with test clips labelled this surely (0: off)

    @property
    def run_name(self) -> str:
        return self.name if self.name is not None else Path(self.model.rstrip("/")).name.replace("/", "-")

    def identity(self) -> dict:
        """The options that must match for a resumed or merged run (not the fold subset)."""
        defaults = FinetuneOptions(self.model)
        out = {k: v for k, v in asdict(self).items() if k not in ("only_folds", "device", "name", "devices")
               and not (k in KNOBS and v == getattr(defaults, k))}
        if out["metric"] in (None, "competition", "dacon-fakevoice"):  # runs started before these options
            del out["metric"]                                             # existed resume unchanged
        if out["class_weight"] == "none":
            del out["class_weight"]
        return out

    def freeze_scheme(self) -> str:
        """The `--freeze` scheme this run trains with (its default depends on the model)."""
        from ensemble.backbones.model import default_freeze

        return self.freeze if self.freeze is not None else default_freeze(self.model)

    def validate(self) -> "FinetuneOptions":
        """Every value of the right type and in range (ConfigError naming the option); floats given as
        whole numbers (a TOML `lr = 1`) come back as floats."""
        hints = typing.get_type_hints(FinetuneOptions)
        coerced = {f.name: _typed(f.name, getattr(self, f.name), hints[f.name]) for f in fields(self)}
        opts = replace(self, **coerced)
        for name, ok, accepted in _RANGES:
            value = getattr(opts, name)
            if value is not None and not ok(value):
                raise ConfigError(f"{_flag(name)} {value!r}: accepted: {accepted}")
        if not opts.model.strip():
            raise ConfigError("MODEL is empty; accepted: a hub id, a local folder or a named config")
        return opts


def _flag(name: str) -> str:
    return {"only_folds": "--fold", "model": "MODEL"}.get(name, f"--{name.replace('_', '-')}")


def _finite(v: float) -> bool:
    return math.isfinite(v)


_RANGES: tuple[tuple[str, typing.Callable[[typing.Any], bool], str], ...] = (
    ("folds", lambda v: v >= 2, "a whole number ≥ 2"),
    ("only_folds", lambda v: all(k >= 0 for k in v), "fold numbers ≥ 0"),
    ("epochs", lambda v: v >= 1, "a whole number ≥ 1"),
    ("lr", lambda v: _finite(v) and v > 0, "a finite learning rate > 0"),
    ("batch_size", lambda v: v >= 1, "a whole number ≥ 1"),
    ("grad_accum", lambda v: v >= 1, "a whole number ≥ 1"),
    ("max_seconds", lambda v: _finite(v) and 0 < v <= MAX_CLIP_SECONDS, f"seconds in (0, {MAX_CLIP_SECONDS:g}]"),
    ("seed", lambda v: 0 <= v < 2**32, "a whole number in [0, 2**32)"),
    ("testlike_per_fold", lambda v: v >= 1, "a whole number ≥ 1"),  # --devices: check_devices (it knows the GPUs)
    ("class_weight", lambda v: v in CLASS_WEIGHTS, ", ".join(CLASS_WEIGHTS)),
    ("warmup", _finite, "a fraction in [0, 1]"),
    ("hold", _finite, "a fraction in [0, 1]"),
    ("weight_decay", lambda v: _finite(v) and v >= 0, "a finite number ≥ 0"),
    ("max_grad_norm", lambda v: _finite(v) and v >= 0, "a finite norm ≥ 0, or off"),
    ("pseudo_label", _finite, "a confidence in (0.5, 1), or 0 for none"),
)

_KINDS = {int: "a whole number", float: "a number", str: "text", dict: "a table of key = value", list: "a list"}


def _typed(name: str, value: typing.Any, hint: typing.Any) -> typing.Any:
    """`value` checked against its field's type hint (None allowed where the hint allows it)."""
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint) or hint
    if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if origin is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if origin in (str, dict) and isinstance(value, origin):
        return value
    if origin is list and isinstance(value, list):
        item = typing.get_args(hint)[0] if typing.get_args(hint) else object
        if all(isinstance(v, item) and not isinstance(v, bool) for v in value):
            return value
        raise ConfigError(f"{_flag(name)} {value!r}: accepted: a list of whole numbers")
    raise ConfigError(f"{_flag(name)} {value!r} is {type(value).__name__}; accepted: {_KINDS.get(origin, origin)}")
