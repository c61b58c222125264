"""Which folders ens wrote: a `.ens-output.json` marker in every folder ens makes for the user (a demo,
an exported test-like set), so `--force` replaces only those and never a folder of the user's own files.
"""

from __future__ import annotations

import json
from pathlib import Path

from ensemble.errors import ExistsError

MARKER = ".ens-output.json"


def mark(folder: Path, what: str, complete: bool = True) -> None:
    """Record in `folder` that ens wrote it (`what`: demo, testlike-export…); `complete=False` while it is
    still being filled in place (a killed writer's folder then reads as partial)."""
    from ensemble.artifacts.io import write_json

    write_json({"written_by": "ens", "what": what, "complete": complete}, Path(folder) / MARKER)


def _marker(folder: Path) -> dict | None:
    try:
        raw = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) and raw.get("written_by") == "ens" else None


def is_owned(folder: Path) -> bool:
    """Whether `folder` carries ens's marker."""
    return _marker(folder) is not None


def is_complete(folder: Path) -> bool:
    """Whether `folder` is a finished ens output (a marker without `complete: false`)."""
    marker = _marker(folder)
    return marker is not None and marker.get("complete", True) is not False


def check_replaceable(path: Path, force: bool, what: str) -> None:
    """Refuse an existing, non-empty `path` without `force`, and with `force` unless ens wrote it."""
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        return  # an empty folder holds nothing to lose
    if not force:
        raise ExistsError(f"{what} {path} exists; pass --force to replace it")
    if path.is_symlink() or not path.is_dir() or not is_owned(path):
        raise ExistsError(f"{path} was not written by ens; refusing to replace it")
