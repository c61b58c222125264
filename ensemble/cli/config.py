"""Option parsing the commands share: `--fold` lists, `--param key=value` pairs, and `--config` TOML files
merged under the command line's own values."""

from __future__ import annotations

import json
from pathlib import Path

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
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
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
