"""The search space of `ens tune`: the fine-tuning knobs a trial draws, per family.

Ranges are centred on what the background material and ens's defaults use: the learning rate a
decade either side of the default, 1..`--epochs` epochs, crops from half of `--max-seconds` to all of
it (0.25-s steps), every
schedule (tri-stage with a 10–50 % hold), warm-up 0–30 %, clipping off / 1 / 5, weight decay 0–0.1,
every freezing scheme the family can do, every pooling where it has frames, and the config's
dropouts, SpecAugment time masking and layer drop where the config has them. Fixed options
(batch, augmentation, seed, …) come from the base options.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ensemble.backbones.families import WAV2VEC2_LIKE
from ensemble.backbones.freezing import layer_count
from ensemble.backbones.overrides import config_keys
from ensemble.backbones.pooling import POOLINGS
from ensemble.backbones.schedules import SCHEDULES
from ensemble.commands.finetune import FinetuneOptions, default_lr

# config key → (low, high), stepped by 0.05; only keys the model's config has are searched
CONFIG_RANGES = {"attention_dropout": (0.0, 0.2), "hidden_dropout": (0.0, 0.2), "activation_dropout": (0.0, 0.2),
                 "mask_time_prob": (0.0, 0.1), "layerdrop": (0.0, 0.1),
                 "hidden_dropout_prob": (0.0, 0.2), "attention_probs_dropout_prob": (0.0, 0.2),  # AST
                 "dropout": (0.0, 0.5)}  # logmel-cnn
SEARCHED = ("lr", "epochs", "max_seconds", "schedule", "warmup", "hold", "weight_decay", "max_grad_norm",
            "freeze", "pooling", "model_config")


def freeze_choices(config: Any) -> list[str]:
    """The freezing schemes `config`'s family can do (first:N for every N short of the whole stack)."""
    model_type = config.model_type
    firsts = [f"first:{n}" for n in range(1, layer_count(config, model_type))]
    if model_type == "logmel-cnn":
        return ["none", *firsts, "all-but-head"]
    return ["feature-encoder", "none", *firsts, "all-but-head"]


def describe_space(base: FinetuneOptions, config: Any) -> dict[str, Any]:
    """The space in words (kept with the study: a resumed study must search the same one)."""
    lr0 = base.lr or default_lr(base.model)
    return {"lr": [lr0 / 10, lr0 * 10], "epochs": [1, base.epochs],
            "max_seconds": [base.max_seconds / 2, base.max_seconds], "schedule": list(SCHEDULES),
            "freeze": freeze_choices(config), "pooling": _poolings(config),
            "model_config": {k: list(v) for k, v in CONFIG_RANGES.items() if k in config_keys(config)}}


def _poolings(config: Any) -> list[str]:
    return list(POOLINGS) if config.model_type in WAV2VEC2_LIKE else ["mean"]


def suggest(trial: Any, base: FinetuneOptions, config: Any) -> FinetuneOptions:
    """One trial's options: `base` with every searched knob drawn from `trial` (an Optuna trial)."""
    lr0 = base.lr or default_lr(base.model)
    schedule = trial.suggest_categorical("schedule", list(SCHEDULES))
    low_seconds = base.max_seconds / 2
    overrides = {key: round(trial.suggest_float(f"model_config.{key}", low, high, step=0.05 if high > 0.1 else 0.025), 4)
                 for key, (low, high) in CONFIG_RANGES.items() if key in config_keys(config)}
    return replace(
        base,
        lr=trial.suggest_float("lr", lr0 / 10, lr0 * 10, log=True),
        epochs=trial.suggest_int("epochs", 1, base.epochs),
        max_seconds=round(trial.suggest_float("max_seconds", low_seconds, base.max_seconds, step=0.25), 4),
        schedule=schedule,
        warmup=round(trial.suggest_float("warmup", 0.0, 0.3, step=0.05), 4),  # 0.15, not 0.15000000000000002
        hold=round(trial.suggest_float("hold", 0.1, 0.5, step=0.1), 4) if schedule == "tri-stage" else 0.0,
        weight_decay=trial.suggest_categorical("weight_decay", [0.0, 0.01, 0.05, 0.1]),
        max_grad_norm=trial.suggest_categorical("max_grad_norm", [0.0, 1.0, 5.0]),
        freeze=trial.suggest_categorical("freeze", freeze_choices(config)),
        pooling=trial.suggest_categorical("pooling", _poolings(config)),
        model_config={**base.model_config, **overrides},
    )
