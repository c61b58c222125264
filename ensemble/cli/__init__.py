"""The `ens` command line."""

from ensemble.cli.app import app, main

__all__ = ["app", "main"]
