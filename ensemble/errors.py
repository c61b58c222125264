"""Typed errors: each message names the file, column, id or parameter at fault and what is accepted."""


class EnsError(Exception):
    """Base class for every error ens reports to the user as one line."""


class DataError(EnsError):
    """Input data (CSV, Parquet, audio) breaks a contract: missing column, duplicate id, NaN, …"""


class ContractError(EnsError):
    """Artifacts that cannot be used together: runs on different folds or data, unknown labels."""


class ExistsError(EnsError):
    """An output already exists and `--force` was not given."""


class NotFittedError(EnsError):
    """An estimator was used before `fit`."""


class ConfigError(EnsError):
    """A bad option or parameter value."""
