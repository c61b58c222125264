"""The workspace: where `models/` and `submissions/` live, and which competition folder it uses."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ensemble.errors import ConfigError, DataError, ExistsError
from ensemble.task import Task

if TYPE_CHECKING:
    from ensemble.audio.cache import DecodeCache

CONFIG_NAME = "ens.toml"
AUDIO_CACHE_ENV = "ENS_AUDIO_CACHE"  # "0"/"off": no decode cache; a folder: keep it there (e.g. a local disk)


@dataclass(frozen=True)
class Workspace:
    """A folder holding `models/<run>/`, `submissions/` and `ens.toml` (the remembered data folder)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def resolve(cls, root: Path | str | None = None) -> "Workspace":
        """`root`, else `$ENS_WORKSPACE`, else the current directory."""
        chosen = root or os.environ.get("ENS_WORKSPACE") or Path.cwd()
        return cls(Path(chosen).resolve())

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def submissions_dir(self) -> Path:
        return self.root / "submissions"

    def audio_cache(self) -> "DecodeCache | None":
        """The decoded-audio cache every run and `ens oof` share: `cache/audio/` in the workspace, or the
        folder `$ENS_AUDIO_CACHE` names; None when it is "0" or "off"."""
        from ensemble.audio.cache import DecodeCache

        chosen = os.environ.get(AUDIO_CACHE_ENV, "").strip()
        if chosen.lower() in ("0", "off", "false", "no"):
            return None
        return DecodeCache(Path(chosen) if chosen else self.root / "cache" / "audio")

    def run_dir(self, name: str) -> Path:
        check_name(name, "run")
        return self.models_dir / name

    def run_names(self) -> list[str]:
        """Runs in `models/`, sorted: folders holding a `run.json`."""
        if not self.models_dir.is_dir():
            return []
        return sorted(p.name for p in self.models_dir.iterdir() if not p.name.startswith(".") and (p / "run.json").is_file())

    def submission_names(self) -> list[str]:
        """Submissions in `submissions/`, sorted: CSVs with a JSON sidecar."""
        if not self.submissions_dir.is_dir():
            return []
        return sorted(p.stem for p in self.submissions_dir.glob("*.csv") if p.with_suffix(".json").is_file())

    def data_dir(self, override: Path | str | None = None, remember: bool = True) -> Path:
        """The competition folder: `override` (remembered when `remember`) or the one in `ens.toml`."""
        if override is not None:
            path = Path(override).resolve()
            if not path.is_dir():
                raise DataError(f"{override}: competition folder not found")
            _check_utf8(path)
            if remember:
                self.remember_data(path)
            return path
        stored = self.settings().get("data")
        if stored:
            return Path(stored)
        raise ConfigError("no competition folder: pass --data DIR once (the workspace remembers it)")

    def settings(self) -> dict:
        """What `ens.toml` remembers: `data` (the competition folder), `task`, `metric`; {} when absent."""
        config = self.root / CONFIG_NAME
        if not config.is_file():
            return {}
        with open(config, "rb") as f:
            try:
                return tomllib.load(f)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{config}: not valid TOML ({exc})") from None
            except UnicodeDecodeError as exc:
                raise ConfigError(f"{config}: not valid TOML (byte {exc.start} is not UTF-8 text); fix or "
                                  "delete it (it only remembers --data, --task and --metric)") from None

    def remember(self, **values: str | None) -> None:
        """Store settings in `ens.toml` beside the ones already there (None values are left out)."""
        from ensemble.artifacts.io import atomic_path

        merged = {**self.settings(), **{k: v for k, v in values.items() if v is not None}}
        for value in merged.values():  # TOML is UTF-8: a path with another byte could not be read back
            _check_utf8(value)
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.root / CONFIG_NAME) as tmp:
            tmp.write_text("".join(f"{key} = {json.dumps(str(value))}\n" for key, value in merged.items()))

    def metric(self, task: Task, override: str | None = None) -> str:
        """The metric every choice uses: `override`, else `ens.toml`'s, else the task's default; an unknown
        name, or one without a form for `task`, is a one-line error."""
        from ensemble.metrics.scorer import get_scorer

        name = override or self.settings().get("metric") or task.default_metric
        get_scorer(name, task)
        return name

    def remember_metric(self, task: Task, name: str) -> None:
        """Store a valid metric in `ens.toml`, so later commands choose by it too (the CLI's `--metric`)."""
        if self.metric(task, name) != self.settings().get("metric"):
            self.remember(metric=name)

    def remember_data(self, path: Path) -> None:
        """Store the competition folder in `ens.toml` (call it once the folder validated)."""
        self.remember(data=str(path))


def _check_utf8(value: object) -> None:
    """A path (or setting) ens can store in ens.toml and hand to libsndfile: UTF-8 text, no stray bytes."""
    try:
        str(value).encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{str(value)!r} holds a byte that is not UTF-8: {CONFIG_NAME} cannot store it and "
                          "libsndfile cannot open files under it; rename the folder (or link it under a UTF-8 "
                          "name)") from None


def check_name(name: str, what: str) -> None:
    """Run and submission names become folder and file names: keep them plain."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+")
    if not name or name.startswith(".") or not set(name) <= allowed:
        raise ConfigError(f"{what} name {name!r} is not valid: use letters, digits, '-', '_', '.', '+'")


def check_overwrite(path: Path, force: bool, what: str) -> None:
    """Refuse to overwrite an existing artifact unless `force`."""
    if path.exists() and not force:
        raise ExistsError(f"{what} {path} exists; pass --force to overwrite it")
