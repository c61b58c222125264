"""`ens tune`: hyper-parameter search over the fine-tuning knobs (`study`), in a space per family (`space`)."""

from ensemble.commands.tune.study import TuneOptions, TuneResult, check_tune, tune

__all__ = ["TuneOptions", "TuneResult", "check_tune", "tune"]
