"""The `ens` command line."""

from ensemble.cli.app import app

__all__ = ["app"]
