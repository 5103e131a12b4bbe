"""Our AUC/ACC equal medmnist.Evaluator's on the same scores, for every task type."""
import numpy as np
import pytest
from medmnist.evaluator import Evaluator, getACC, getAUC

from medconv.metrics import acc_score, auc_score, classification_metrics


def random_case(task: str, rng: np.random.Generator, n: int = 200, k: int = 5):
    if task == "multi-label, binary-class":
        y = rng.integers(0, 2, (n, k))
        s = rng.random((n, k))
    elif task == "binary-class":
        y = rng.integers(0, 2, (n, 1))
        s = rng.random((n, 2))
        s /= s.sum(1, keepdims=True)
    else:
        y = rng.integers(0, k, (n, 1))
        s = rng.dirichlet(np.ones(k), n)
    # make the scores informative so AUCs are not all near 0.5
    if task != "multi-label, binary-class":
        s[np.arange(n), y[:, 0]] += rng.random(n)
        s /= s.sum(1, keepdims=True)
    return y, s


@pytest.mark.parametrize("task", ["binary-class", "multi-class", "multi-label, binary-class", "ordinal-regression"])
def test_auc_acc_equal_medmnist_evaluator_functions(task):
    rng = np.random.default_rng(1)
    for _ in range(5):
        y, s = random_case(task, rng)
        assert auc_score(y, s, task) == pytest.approx(getAUC(y, s, task), abs=1e-12)
        assert acc_score(y, s, task) == pytest.approx(getACC(y, s, task), abs=1e-12)


def test_equal_evaluator_on_real_breastmnist_labels(data_root):
    evaluator = Evaluator("breastmnist", "test", root=str(data_root / "medmnist"))
    rng = np.random.default_rng(0)
    y = evaluator.labels
    s = rng.random((len(y), 2)) * 0.6
    s[np.arange(len(y)), y[:, 0]] += 0.4  # informative but imperfect
    s /= s.sum(1, keepdims=True)
    auc, acc = evaluator.evaluate(s)
    assert 0.6 < auc < 1.0
    assert auc_score(y, s, "binary-class") == pytest.approx(auc, abs=1e-12)
    assert acc_score(y, s, "binary-class") == pytest.approx(acc, abs=1e-12)


def test_classification_metrics_counts():
    y = np.array([[0], [0], [1], [1], [2], [2]])
    s = np.eye(3)[[0, 1, 1, 1, 2, 0]].astype(float)
    m = classification_metrics(y, s, "multi-class", ["a", "b", "c"])
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["acc"] == pytest.approx(4 / 6)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["a"]["recall"] == pytest.approx(0.5)
