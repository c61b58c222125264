"""The `ens` command line: one module per command under `ensemble/cli/`, each registering itself on the
shared app when imported here. A command parses options, calls one library function, presents the result.

Heavy libraries (torch, transformers, onnxruntime) are imported only inside the command functions that
need them, so `ens --help`, `ens stack` and `ens board` start fast.
"""

from __future__ import annotations

from ensemble.cli import (board, demo, export, features, finetune, import_, lb, oof, predict,  # noqa: F401
                          report, score, serve, stack, testlike, tune)  # importing a command's module registers it
from ensemble.cli.shared import app


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
