"""Option parsing the commands share: `--fold` lists, `--param key=value` pairs, and `--config` TOML files
merged under the command line's own values."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

from ensemble.errors import ConfigError


def parse_folds(value: str | None) -> list[int] | None:
    """`--fold 0,2` as a list of fold numbers (None: every fold)."""
    if not value:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--fold takes fold numbers separated by commas (e.g. 0,2), got {value!r}") from None


def parse_params(items: list[str], option: str = "--param") -> dict:
    """`key=value` pairs of a repeatable option (`--param`, `--model-config`); values parsed as JSON where
    they can be (numbers, lists, true/false), else kept as text."""
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{option} takes key=value, got {item!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def parse_grad_norm(value: str | float | int) -> float:
    """`--max-grad-norm`: a norm ≥ 0, or `off` (0: no clipping)."""
    if isinstance(value, str) and value.strip().lower() in ("off", "none"):
        return 0.0
    try:
        norm = float(value)
    except (TypeError, ValueError):
        norm = -1.0
    if isinstance(value, bool) or not norm >= 0:
        raise ConfigError(f"--max-grad-norm takes a norm ≥ 0 or off, got {value!r}")
    return norm


def merge_config(path: Path, values: dict, ctx) -> dict:
    """Options from a TOML file, overridden by options given on the command line."""
    import tomllib

    try:
        with open(path, "rb") as f:
            stored = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        reason = f"byte {exc.start} is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
        raise ConfigError(f"{path}: not valid TOML ({reason})") from None
    stored = {k.replace("-", "_"): v for k, v in stored.items()}
    unknown = sorted(set(stored) - set(values))
    if unknown:
        raise ConfigError(f"{path}: unknown option {unknown[0]!r}; accepted: {', '.join(sorted(values))}")
    merged = dict(values)
    for key, value in stored.items():
        param = {"only_folds": "fold"}.get(key, key)
        source = ctx.get_parameter_source(param)
        if source is None or source.name != "COMMANDLINE":
            merged[key] = value
    return merged


@dataclass(frozen=True)
class SharedOption:
    """One option `ens finetune` and `ens tune` both take: declared once, with tune's own words where a
    trial reads it differently (a range's bound or centre rather than the value)."""

    name: str
    type: Any
    default: Any
    flag: str
    help: str
    tune_help: str | None = None


TRAINING_OPTIONS = (
    SharedOption("fold", Optional[str], None, "--fold", "Run only these folds, e.g. 0,2 (spread folds over machines).",
                 "Folds each trial trains and scores, e.g. 0,1 (default 0)."),
    SharedOption("epochs", int, 5, "--epochs", "Training epochs per fold.", "Most epochs a trial may draw."),
    SharedOption("lr", Optional[float], None, "--lr",
                 "AdamW learning rate (default 3e-5; 1e-3 for named configs trained from scratch).",
                 "Centre of the learning-rate range (a decade either side; default as finetune's)."),
    SharedOption("batch_size", int, 16, "--batch-size", "Clips per step.", "Clips per step (fixed)."),
    SharedOption("grad_accum", Optional[int], None, "--grad-accum", "Steps per update (default: effective batch 128).",
                 "Steps per update (fixed; default as finetune's)."),
    SharedOption("max_seconds", float, 5.0, "--max-seconds",
                 "Clip length the model sees (crop/pad; longer clips are windowed at inference).",
                 "Longest crop a trial may draw (from half of it)."),
    SharedOption("augment", str, "default", "--augment", "'default', 'none', or a list such as mix,noise,gain,shift.",
                 "Augmentation (fixed), as for finetune."),
    SharedOption("config", Optional[Path], None, "--config",
                 "TOML file with any of these options (command-line values win)."),
    SharedOption("device", str, "auto", "--device", "auto, cpu or cuda."),
    SharedOption("seed", int, 0, "--seed", "Seed for folds, augmentation and initialisation.",
                 "Seed of the sampler and of every trial's training."),
)


def training_options(command: str) -> Callable[[Callable], Callable]:
    """Put `TRAINING_OPTIONS` where a command function declares a `training: dict` parameter: typer sees each
    option (so `--help` and parsing are as if declared there), the function gets them as one dict."""
    import functools
    import inspect

    import typer

    def decorate(func: Callable) -> Callable:
        signature = inspect.signature(func, eval_str=True)  # typer reads the annotations of this signature
        shared = [inspect.Parameter(o.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=o.default,
                                    annotation=Annotated[o.type, typer.Option(o.flag, help=(o.tune_help if command == "tune" and o.tune_help else o.help))])
                  for o in TRAINING_OPTIONS]
        params = []
        for p in signature.parameters.values():
            params.extend(shared if p.name == "training" else [p])

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            training = {o.name: kwargs.pop(o.name) for o in TRAINING_OPTIONS}
            return func(*args, training=training, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=params)
        return wrapper

    return decorate


class TrainingCommands:
    """`@training_commands.command("finetune")`: a command (one-line errors, as `shared.command`) that takes
    `TRAINING_OPTIONS` where it declares `training: dict`."""

    @staticmethod
    def command(name: str) -> Callable[[Callable], Callable]:
        from ensemble.cli.shared import command

        return lambda func: command(name)(training_options(name)(func))


training_commands = TrainingCommands()


def option_values(ctx, model: str, training: dict, **more) -> dict:
    """The options both commands build FinetuneOptions from: the shared ones (`--fold` as `only_folds`) and
    the command's own, with a `--config` file's values merged under the command line's."""
    values = {"model": model, **{k: v for k, v in training.items() if k not in ("fold", "config")},
              "only_folds": parse_folds(training["fold"]), **more}
    return merge_config(training["config"], values, ctx) if training["config"] is not None else values
