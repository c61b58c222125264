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


def test_pool_averages_runs_in_each_tasks_blending_space_and_leaves_one_run_unchanged():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.99, (4, 2, 3))  # (rows, labels, models)
    z = np.log(p) - np.log1p(-p)
    np.testing.assert_allclose(MULTILABEL.pool(p), 1 / (1 + np.exp(-z.mean(axis=-1))), rtol=0, atol=1e-15)
    q = rng.dirichlet(np.ones(3), size=(4, 5)).transpose(0, 2, 1)  # (rows, classes, models); rows sum to 1
    pooled = MULTICLASS.pool(q)
    expected = np.exp(np.log(q).mean(axis=-1))
    np.testing.assert_allclose(pooled, expected / expected.sum(axis=1, keepdims=True), rtol=0, atol=1e-15)
    assert np.array_equal(MULTICLASS.pool(q[..., :1]), q[..., 0])
    assert np.array_equal(MULTILABEL.pool(p[..., :1]), p[..., 0])


def test_only_a_multiclass_task_asks_rows_to_sum_to_one_and_hold_one_class():
    p = np.array([[0.2, 0.8], [0.5, 0.6], [0.9, 0.9]])
    y = np.array([[0, 1], [1, 1], [0, 0]])
    assert not MULTILABEL.bad_rows(p, 1e-4).any() and not MULTILABEL.bad_targets(y).any()
    assert MULTICLASS.bad_rows(p, 1e-4).tolist() == [False, True, True]
    assert MULTICLASS.bad_targets(y).tolist() == [False, True, True]
    assert MULTICLASS.bad_rows(np.array([[[0.2, 0.79995]]]), 1e-4).shape == (1, 1)  # (rows, runs) of a tensor


def test_class_targets_are_one_estimator_per_label_or_one_over_the_classes():
    y = np.array([[1, 0], [0, 1], [np.nan, 1], [0, 0]], dtype=float)
    per_label = MULTILABEL.class_targets(y, ["fake", "real"])
    assert [c for *_, c in per_label] == [slice(1, 2), slice(1, 2)]
    assert per_label[0][0].tolist() == [True, True, False, True] and per_label[0][1].tolist() == [1, 0, 0]
    with pytest.raises(ConfigError, match="label 'fake' has one class"):
        MULTILABEL.class_targets(np.array([[1.0, 0.0], [1.0, 1.0]]), ["fake", "real"])
    onehot = np.array([[1, 0, 0], [0, 0, 1], [np.nan, np.nan, np.nan], [0, 1, 0]], dtype=float)
    [(known, target, columns)] = MULTICLASS.class_targets(onehot, ["a", "b", "c"])
    assert known.tolist() == [True, True, False, True] and target.tolist() == [0, 2, 1] and columns == slice(None)
    with pytest.raises(ConfigError, match="class 'c' has no training examples"):
        MULTICLASS.class_targets(onehot[[0, 3]], ["a", "b", "c"])


def test_confident_targets_and_balanced_weights_follow_the_task():
    p = np.array([[0.95, 0.05], [0.6, 0.4]])
    ml = MULTILABEL.confident_targets(p, 0.9)
    assert ml[0].tolist() == [1.0, 0.0] and np.isnan(ml[1]).all()
    mc = MULTICLASS.confident_targets(p, 0.9)
    assert mc[0].tolist() == [1.0, 0.0] and np.isnan(mc[1]).all()
    y = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=float)
    assert MULTILABEL.class_weights(y) is None
    assert MULTICLASS.class_weights(y) == pytest.approx((4 / 9, 4 / 3, 4 / 3))  # n / (classes · count), absent: 1


def test_a_shards_loss_times_its_share_of_the_batch_is_the_batch_mean():
    torch = pytest.importorskip("torch")
    logits = torch.tensor([[0.3, -1.2, 2.0], [1.5, 0.1, -0.4], [-0.2, 0.7, 0.9], [0.0, 2.2, -1.0]])
    onehot = torch.eye(3)[[2, 0, 1, 1]]
    for task in (MULTILABEL, MULTICLASS):
        mean = task.training_loss(logits, onehot)
        summed = task.training_loss(logits, onehot, share=1 / len(logits))
        assert torch.allclose(mean, summed, atol=1e-6)
    weighted = MULTICLASS.training_loss(logits, onehot, torch.tensor([1.0, 2.0, 3.0]))
    assert not torch.allclose(weighted, MULTICLASS.training_loss(logits, onehot))
    assert torch.allclose(MULTILABEL.training_loss(logits, onehot),
                          torch.nn.functional.binary_cross_entropy_with_logits(logits, onehot))


def test_a_task_without_a_testlike_set_drops_or_refuses_the_testlike_split():
    both = ("train", "test", "testlike")
    assert MULTILABEL.splits(both, "run 'a'") == both
    assert MULTICLASS.splits(both, "run 'a'") == ("train", "test")
    with pytest.raises(ConfigError, match="--testlike: a multiclass task has no test-like set"):
        MULTICLASS.splits(("testlike",), "--testlike")
