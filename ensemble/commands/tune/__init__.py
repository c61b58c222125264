"""`ens tune`: hyper-parameter search over the fine-tuning knobs (`study`), in a space per family (`space`)."""

from ensemble.commands.tune.study import TuneOptions, TuneResult, tune

__all__ = ["TuneOptions", "TuneResult", "tune"]
