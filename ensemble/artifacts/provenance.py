"""What made an artifact: package versions, machine, time — recorded in every manifest."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from importlib import metadata

PACKAGES = ("ens-audio-stack", "numpy", "pandas", "pyarrow", "scikit-learn", "lightgbm", "torch", "transformers",
            "onnx", "onnxruntime", "onnxruntime-gpu", "soundfile", "soxr")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape predictions (absent ones are left out)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def machine() -> dict[str, str]:
    import os

    return {"platform": platform.platform(), "processor": platform.machine(), "cpus": str(os.cpu_count())}
