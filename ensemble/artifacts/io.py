"""Atomic writes (temp file + rename) and small readers: no half-written output, ever."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd

from ensemble.errors import DataError


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, umask_mode(directory=False))  # mkstemp makes it 0600; teammates should read outputs
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# `atomic_path`'s temp names: "." + target name + "." + mkstemp's 8 random characters + ".tmp"
TMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def sweep_tmp(folder: Path) -> list[Path]:
    """Remove the temp files killed writers left in `folder` (not below it); returns the paths removed.

    Only call it where no live writer can be using `folder`: under the folder's lock, or for a fold
    folder that this process is about to redo.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if TMP_NAME.match(path.name) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _write(path: Path, writer: Callable[[Path], None]) -> Path:
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    """Write a DataFrame to Parquet atomically, without the index."""
    return _write(path, lambda tmp: df.to_parquet(tmp, index=False))


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    """Write a CSV atomically; floats in full precision so files are byte-stable and lossless."""
    return _write(path, lambda tmp: csv_to(df, tmp))


def csv_to(df: pd.DataFrame, path: Path) -> None:
    """The CSV bytes every ens CSV has (full-precision floats, "\\n" line ends), written to `path` as is."""
    df.to_csv(path, index=False, float_format="%.17g", lineterminator="\n")


def write_json(obj: Any, path: Path) -> Path:
    """Write JSON atomically, keys sorted, so identical content gives identical bytes."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"
    return _write(path, lambda tmp: tmp.write_text(text))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in JSON")


def read_json(path: Path) -> dict:
    """Read a JSON file; a missing or broken file is a DataError naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (byte {exc.start} is not UTF-8 text)") from None


def read_csv(path: Path) -> pd.DataFrame:
    """Read a CSV with ids kept as strings; a missing or unreadable file is a DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return pd.read_csv(path, dtype={"id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None


def read_parquet(path: Path) -> pd.DataFrame:
    """Read a Parquet file; a missing or broken file is a DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a broken file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def frame_sha256(df: pd.DataFrame) -> str:
    """Hex SHA-256 of a DataFrame's content (values, columns, order), independent of file format."""
    digest = hashlib.sha256()
    digest.update(json.dumps(list(map(str, df.columns))).encode())
    digest.update(pd.util.hash_pandas_object(df, index=False).values.tobytes())
    return digest.hexdigest()


def umask_mode(directory: bool) -> int:
    """The mode `open`/`mkdir` would give under the current umask (0666/0777 & ~umask).

    `tempfile.mkstemp`/`mkdtemp` create private (0600/0700) entries whatever the umask; files and run
    folders renamed into place from them get this mode instead, so a shared machine's team can read them.
    """
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask
