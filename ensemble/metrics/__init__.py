"""Metrics: the competition's formula in one place (`dacon`), scorers that any stacker choice can use
(`scorer`), and scores of prediction frames (`frames`)."""

from ensemble.metrics.dacon import MetricError, ScoreParts, competition_score
from ensemble.metrics.scorer import COMPETITION, SCORERS, Scorer, get_scorer

__all__ = ["COMPETITION", "SCORERS", "MetricError", "ScoreParts", "Scorer", "competition_score", "get_scorer"]
