"""The competition metric is a Scorer like any other: fine-tuning's best-epoch choice and the board get
one (never None), and a metric that cannot score the held-out rows is recorded, not silently replaced."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble.artifacts.workspace import Workspace
from ensemble.commands.board import _metric, recorded_in
from ensemble.commands.finetune import _scorer, validation_loss
from ensemble.metrics import COMPETITION, competition_score, get_scorer
from ensemble.metrics.scorer import Scorer


class _Comp:
    def __init__(self, task):
        self.task = task


class _Opts:
    metric = None


def test_finetune_scorer_is_the_competition_scorer_for_fake_real():
    from ensemble.task import MULTICLASS, MULTILABEL

    assert _scorer(_Comp(MULTILABEL), _Opts()) is COMPETITION
    assert isinstance(_scorer(_Comp(MULTICLASS), _Opts()), Scorer)


def test_validation_loss_is_the_competition_score():
    rng = np.random.default_rng(0)
    y = np.column_stack([(rng.random(200) < 0.5), (rng.random(200) < 0.5)]).astype(float)
    p = np.clip(0.6 * y + 0.4 * rng.random((200, 2)), 0, 1)
    fallbacks: list[dict] = []
    assert validation_loss(COMPETITION, y, p, fallbacks) == competition_score(y, p).score
    assert fallbacks == []


def test_validation_fallback_is_recorded():
    y = np.ones((50, 2))  # one class held out: AUC undefined
    p = np.full((50, 2), 0.7)
    fallbacks: list[dict] = []
    loss = validation_loss(COMPETITION, y, p, fallbacks)
    assert loss == pytest.approx(0.09)
    assert fallbacks == [{"metric": "competition", "scored_by": "mean squared error", "reason": fallbacks[0]["reason"]}]
    assert "AUC is undefined" in fallbacks[0]["reason"]


def test_board_scorer_is_never_none(tmp_path, csv_competition):
    ws = Workspace.resolve(tmp_path / "ws")
    scorer = _metric(ws, None)
    assert scorer is COMPETITION and recorded_in(scorer)
    assert not recorded_in(get_scorer("logloss"))
