"""The task object: each task's link and inverse link round-trip, and a task is found by its name only."""

from __future__ import annotations

import numpy as np
import pytest

from ensemble.errors import ConfigError
from ensemble.task import MULTICLASS, MULTILABEL, TASKS, task_named


def test_each_task_is_found_by_the_name_files_store():
    assert task_named("multilabel") is MULTILABEL and task_named("multiclass") is MULTICLASS
    assert list(TASKS) == ["multilabel", "multiclass"] and str(MULTICLASS) == "multiclass"


def test_an_unknown_task_is_one_line_naming_it_and_the_valid_ones():
    with pytest.raises(ConfigError, match=r"^unknown task 'softmax'; choose one of: multilabel, multiclass$"):
        task_named("softmax")


def test_multilabel_link_is_the_logit_of_each_column_and_round_trips():
    p = np.array([[0.1, 0.5, 0.9], [0.3, 0.7, 0.2]])
    z = MULTILABEL.link(p)
    assert z[0, 1] == 0.0 and z[0, 0] == pytest.approx(np.log(0.1 / 0.9))
    np.testing.assert_allclose(MULTILABEL.inverse_link(z), p, rtol=0, atol=1e-12)


def test_multiclass_link_is_the_log_probability_and_round_trips_rows_summing_to_one():
    p = np.array([[0.1, 0.2, 0.7], [0.25, 0.25, 0.5]])
    z = MULTICLASS.link(p)
    np.testing.assert_allclose(z, np.log(p), rtol=0, atol=1e-15)
    back = MULTICLASS.inverse_link(z + 3.0)  # a shift of a row's scores leaves its softmax unchanged
    np.testing.assert_allclose(back, p, rtol=0, atol=1e-12)
    assert np.isfinite(MULTICLASS.link(np.array([[0.0, 1.0]]))).all()


def test_only_independent_labels_are_blended_label_by_label_and_have_a_testlike_set():
    assert MULTILABEL.label_by_label and MULTILABEL.has_testlike and not MULTILABEL.exclusive
    assert not MULTICLASS.label_by_label and not MULTICLASS.has_testlike and MULTICLASS.exclusive
    assert (MULTILABEL.default_metric, MULTICLASS.default_metric) == ("competition", "logloss")


def test_a_task_sent_to_another_process_is_the_same_task():
    import copy
    import pickle

    from ensemble.metrics.scorer import get_scorer

    for task in (MULTILABEL, MULTICLASS):
        assert pickle.loads(pickle.dumps(task)) is task and copy.deepcopy(task) is task
    assert get_scorer("competition", pickle.loads(pickle.dumps(MULTILABEL))).name == "competition"
