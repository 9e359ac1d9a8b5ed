"""Exact-number tests of mer.evaluation.metrics on hand-made loss matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mer.evaluation import metrics

# Three tasks, two evaluations per task. Values a task has BEFORE its training starts are set
# deliberately low (0.1, 0.5) so that a metric which wrongly looks at them gives a different number.
# A task starts from the weights of the previous task's boundary evaluation, so that one counts
# (task 1's 1.7 at e1 is its best loss since its start).
LOSSES = np.array(
    [
        [5.0, 0.1, 7.0],  # e0: step 0, training task 0
        [2.0, 1.7, 6.5],  # e1: boundary of task 0 -> L_after(0) = 2; task 1 starts here
        [2.5, 3.0, 0.5],  # e2: training task 1
        [3.0, 2.0, 6.0],  # e3: boundary of task 1 -> L_after(1) = 2; task 2 starts here
        [2.8, 1.8, 3.0],  # e4: training task 2 (task 1 keeps improving after its boundary)
        [3.5, 2.2, 1.5],  # e5: boundary of task 2 -> L_after(2) = 1.5, L_end = this row
    ]
)
TASK = np.array([0, 0, 1, 1, 2, 2])
BOUNDARY = np.array([False, True, False, True, False, True])


def test_loss_matrix_rows_are_boundary_evaluations() -> None:
    r = metrics.loss_matrix(LOSSES, TASK, BOUNDARY)
    np.testing.assert_array_equal(r, LOSSES[[1, 3, 5]])


def test_learned_and_retained_loss() -> None:
    assert metrics.learned_loss(LOSSES, TASK, BOUNDARY) == pytest.approx((2.0 + 2.0 + 1.5) / 3)
    assert metrics.retained_loss(LOSSES, TASK, BOUNDARY) == pytest.approx((3.5 + 2.2 + 1.5) / 3)


def test_forgetting_uses_best_loss_since_task_start() -> None:
    # task 0: 3.5 - min(all) = 3.5 - 2.0; task 1: 2.2 - 1.7 (e1, the boundary of task 0 it starts from,
    # not 0.1 at e0 before it started); task 2: 1.5 - 1.5 (not 0.5 at e2 before it started).
    np.testing.assert_allclose(metrics.forgetting_per_task(LOSSES, TASK, BOUNDARY), [1.5, 0.5, 0.0])
    assert metrics.forgetting(LOSSES, TASK, BOUNDARY) == pytest.approx((1.5 + 0.5) / 2)


def test_forgetting_counts_the_start_of_a_task() -> None:
    """The minimum starts at the previous task's boundary evaluation: the weights the task starts from."""
    losses = np.array([[4.0, 9.0], [3.0, 1.0], [3.5, 2.0], [3.6, 2.5]])  # task 1 is best before its first step
    task, boundary = np.array([0, 0, 1, 1]), np.array([False, True, False, True])
    np.testing.assert_allclose(metrics.forgetting_per_task(losses, task, boundary), [0.6, 1.5])
    np.testing.assert_allclose(metrics.forgetting_curve(losses, task, boundary), [0.0, 0.0, 0.75, 1.05])


def test_backward_transfer_uses_l_after() -> None:
    # (L_after - L_end) over tasks 0, 1: (2 - 3.5) and (2 - 2.2)
    assert metrics.backward_transfer(LOSSES, TASK, BOUNDARY) == pytest.approx((-1.5 - 0.2) / 2)


def test_forgetting_curve_exact() -> None:
    expected = [0.0, 0.0, (0.5 + 1.3) / 2, (1.0 + 0.3) / 2, (0.8 + 0.1 + 0.0) / 3, (1.5 + 0.5 + 0.0) / 3]
    np.testing.assert_allclose(metrics.forgetting_curve(LOSSES, TASK, BOUNDARY), expected)


def test_forgetting_curve_needs_no_boundary() -> None:
    """A running run (only the first three evaluations) still has a curve."""
    curve = metrics.forgetting_curve(LOSSES[:3], TASK[:3], BOUNDARY[:3])
    np.testing.assert_allclose(curve, [0.0, 0.0, 0.9])


def test_summary_metrics_keys_and_names() -> None:
    out = metrics.summary_metrics(LOSSES, TASK, BOUNDARY, task_names=["en", "fr", "de"])
    assert set(out) == {"learned_loss", "retained_loss", "forgetting", "backward_transfer", "forgetting_per_task"}
    assert out["forgetting_per_task"] == pytest.approx({"en": 1.5, "fr": 0.5, "de": 0.0})
    assert out["forgetting"] == pytest.approx(1.0)
    assert out["backward_transfer"] == pytest.approx(-0.85)
    assert isinstance(out["learned_loss"], float)
    default = metrics.summary_metrics(LOSSES, TASK, BOUNDARY)
    assert list(default["forgetting_per_task"]) == ["0", "1", "2"]


def test_single_task_scores_are_nan() -> None:
    losses = np.array([[4.0], [3.0], [2.5]])
    out = metrics.summary_metrics(losses, np.zeros(3, dtype=int), np.array([False, False, True]))
    assert out["learned_loss"] == out["retained_loss"] == 2.5
    assert math.isnan(out["forgetting"]) and math.isnan(out["backward_transfer"])
    assert out["forgetting_per_task"] == {"0": 0.0}


def test_nan_loss_propagates() -> None:
    losses = LOSSES.copy()
    losses[5, 0] = np.nan
    assert math.isnan(metrics.retained_loss(losses, TASK, BOUNDARY))
    assert metrics.learned_loss(losses, TASK, BOUNDARY) == pytest.approx(5.5 / 3)


@pytest.mark.parametrize(
    ("losses", "task", "boundary", "message"),
    [
        (LOSSES[0], TASK, BOUNDARY, "2-D"),
        (LOSSES, TASK[:-1], BOUNDARY, "eval_task_index must have shape"),
        (LOSSES, TASK, BOUNDARY[:-1], "boundary must have shape"),
        (LOSSES, np.array([0, 0, 1, 1, 2, 3]), BOUNDARY, r"lie in \[0, 2\]"),
        (LOSSES, np.array([0, 0, 1, 0, 2, 2]), BOUNDARY, "goes backwards"),
        (LOSSES, TASK, np.array([True, False, False, True, False, True]), "last evaluation of its task"),
        (LOSSES, TASK, np.array([False, True, False, False, False, True]), "task 1 has no boundary"),
        (LOSSES[:4], TASK[:4], BOUNDARY[:4], "task 2 has no boundary"),
        (np.zeros((0, 3)), np.zeros(0, dtype=int), np.zeros(0, dtype=bool), "empty"),
        (LOSSES, TASK + 0.5, BOUNDARY, "integers"),
    ],
)
def test_malformed_input_raises(losses, task, boundary, message) -> None:
    with pytest.raises(ValueError, match=message):
        metrics.summary_metrics(losses, task, boundary)


def test_wrong_number_of_task_names() -> None:
    with pytest.raises(ValueError, match="2 task names for 3"):
        metrics.summary_metrics(LOSSES, TASK, BOUNDARY, task_names=["en", "fr"])
