#!/usr/bin/env python3
"""Reference numbers for tests/metrics_sklearn.rs, computed with scikit-learn.

Usage (scratch venv, never committed):
  python3 -m venv /tmp/mfvenv && /tmp/mfvenv/bin/pip install scikit-learn numpy
  /tmp/mfvenv/bin/python scripts/make_metrics_reference.py > tests/fixtures/metrics/sklearn_reference.json
"""

import json

import numpy as np
import sklearn
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def case(name, y_true, y_pred):
    y_true = [int(v) for v in y_true]
    y_pred = [int(v) for v in y_pred]
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(range(18)), zero_division=0)
    task = lambda ys, fn: [fn(v) for v in ys]
    tasks = {
        name: f1_score(task(y_true, fn), task(y_pred, fn), average="macro")
        for name, fn in [("mask", lambda c: c // 6), ("gender", lambda c: (c // 3) % 2), ("age", lambda c: c % 3)]
    }
    return {
        "name": name,
        "y_true": y_true,
        "y_pred": y_pred,
        "macro_f1": f1_score(y_true, y_pred, average="macro"),
        "macro_f1_all18": f1_score(y_true, y_pred, average="macro", labels=list(range(18)), zero_division=0),
        "accuracy": accuracy_score(y_true, y_pred),
        "precision": p.tolist(),
        "recall": r.tolist(),
        "f1": f.tolist(),
        "support": s.tolist(),
        "tasks": tasks,
        "confusion": confusion_matrix(y_true, y_pred, labels=list(range(18))).tolist(),
    }


def main():
    rng = np.random.default_rng(7)
    cases = [case("brief_example", [0, 0, 1, 1, 2, 2, 5], [0, 1, 1, 1, 2, 0, 2])]
    # Realistic: skewed classes, 70% correct, errors mostly within the same mask group.
    t = rng.choice(18, size=300, p=np.r_[np.full(6, 0.1), np.full(12, 0.4 / 12)])
    pr = np.where(rng.random(300) < 0.7, t, (t // 6) * 6 + rng.integers(0, 6, 300))
    cases.append(case("skewed_300", t, pr))
    # Predictions outside the true label set (class predicted but never true → F1 0).
    t = rng.integers(0, 9, 120)
    pr = np.where(rng.random(120) < 0.5, t, rng.integers(0, 18, 120))
    cases.append(case("spurious_predictions", t, pr))
    print(json.dumps({"sklearn": sklearn.__version__, "cases": cases}, indent=1))


if __name__ == "__main__":
    main()
