"""The workspace: where `models/` and `submissions/` live, and which competition folder it uses."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ensemble.errors import ConfigError, DataError, ExistsError

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
            if remember:
                self.remember_data(path)
            return path
        config = self.root / CONFIG_NAME
        if config.is_file():
            with open(config, "rb") as f:
                stored = tomllib.load(f).get("data")
            if stored:
                return Path(stored)
        raise ConfigError("no competition folder: pass --data DIR once (the workspace remembers it)")

    def remember_data(self, path: Path) -> None:
        """Store the competition folder in `ens.toml` (call it once the folder validated)."""
        from ensemble.artifacts.io import atomic_path

        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.root / CONFIG_NAME) as tmp:
            tmp.write_text(f"data = {json.dumps(str(path))}\n")


def check_name(name: str, what: str) -> None:
    """Run and submission names become folder and file names: keep them plain."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+")
    if not name or name.startswith(".") or not set(name) <= allowed:
        raise ConfigError(f"{what} name {name!r} is not valid: use letters, digits, '-', '_', '.', '+'")


def check_overwrite(path: Path, force: bool, what: str) -> None:
    """Refuse to overwrite an existing artifact unless `force`."""
    if path.exists() and not force:
        raise ExistsError(f"{what} {path} exists; pass --force to overwrite it")
