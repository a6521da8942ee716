"""Evaluation against known labels: the model beside PCA and an IsolationForest.

Every method gives each row a score where higher = more anomalous: the model's
``reconstruction_error``; PCA's mean squared residual (standardized units) with
as many components as the model's latent; IsolationForest's negated
``score_samples``. The baselines are fitted on the same training rows as the
model (a sample of them, see ``autoenc evaluate --baseline_rows``).

Figures per method (``metrics``): ROC-AUC, PR-AUC (average precision),
precision at k (of the k highest-scoring rows, the share labeled anomalous; k
defaults to the number of rows labeled anomalous), and the confusion matrix at
a threshold: the model's own threshold, and for the baselines the threshold
that flags as many rows as the model's does (equal alert volume).

Example:
    >>> m = metrics(np.array([0, 0, 1, 1], bool), np.array([0.1, 0.4, 0.35, 0.8]), threshold=0.3)
    >>> m["roc_auc"], m["confusion"]
    (0.75, {'tp': 2, 'fp': 1, 'tn': 1, 'fn': 0})
"""

from __future__ import annotations

import dataclasses

import numpy as np

from autoenc.errors import ConfigError

METHODS = ("autoenc", "pca", "isolation_forest")


def metrics(labels: np.ndarray, scores: np.ndarray, *, threshold: float, k: int | None = None) -> dict:
    """ROC-AUC, PR-AUC, precision@k and the confusion matrix of ``scores > threshold``.

    Args:
        labels: bool [n], True = labeled anomalous.
        scores: float [n], higher = more anomalous.
        threshold: rows scoring above it are flagged.
        k: rows for precision@k; default the number labeled anomalous.

    Raises:
        ConfigError: the labels are all of one class (no AUC is defined).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    labels = np.asarray(labels, dtype=bool)
    scores = finite_scores(scores)
    n_anomalous = int(labels.sum())
    if n_anomalous in (0, len(labels)):
        raise ConfigError(
            f"Evaluation needs rows labeled normal and anomalous; the {len(labels)} valid rows have "
            f"{n_anomalous} labeled anomalous."
        )
    k = n_anomalous if k is None else min(int(k), len(labels))
    # Highest scores first; ties broken by row order (stable), the same for every method.
    top = np.argsort(-scores, kind="stable")[:k]
    flagged = scores > threshold
    return {
        "roc_auc": float(roc_auc_score(labels, scores)),
        "pr_auc": float(average_precision_score(labels, scores)),
        "precision_at_k": float(labels[top].mean()) if k else None,
        "k": k,
        "threshold": float(threshold),
        "flagged": int(flagged.sum()),
        "confusion": {
            "tp": int((flagged & labels).sum()),
            "fp": int((flagged & ~labels).sum()),
            "tn": int((~flagged & ~labels).sum()),
            "fn": int((~flagged & labels).sum()),
        },
    }


def finite_scores(scores) -> np.ndarray:
    """Scores with +inf (a row beyond the model's float32 range) replaced by
    the largest float64, which ranks them the same (highest, tied) and which
    scikit-learn's metrics accept.

    Example:
        >>> finite_scores(np.array([1.0, np.inf])).tolist() == [1.0, np.finfo(np.float64).max]
        True
    """
    scores = np.asarray(scores, dtype=np.float64)
    return np.where(np.isposinf(scores), np.finfo(np.float64).max, scores)


def threshold_for_count(scores: np.ndarray, count: int) -> float:
    """A threshold that flags (``scores > threshold``) the ``count`` highest
    scores; where ties make that impossible, the nearest number of rows it
    can flag (fewer when both are as near).

    Example:
        >>> threshold_for_count(np.array([1.0, 5.0, 3.0, 4.0]), 2)
        3.0
        >>> t = threshold_for_count(np.array([0.2, 1.0, 1.0, 1.0, 0.5]), 2)
        >>> int((np.array([0.2, 1.0, 1.0, 1.0, 0.5]) > t).sum())
        3
    """
    ordered = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if count <= 0:
        return float(ordered[0]) if len(ordered) else 0.0
    if count >= len(ordered):
        return float(ordered[-1]) - 1.0
    if ordered[count] < ordered[count - 1]:
        return float(ordered[count])
    tied = ordered[count - 1]
    fewer = int(np.count_nonzero(ordered > tied))
    more = int(np.count_nonzero(ordered >= tied))
    if count - fewer <= more - count:
        return float(tied)
    lower = ordered[ordered < tied]
    return float(lower[0]) if len(lower) else float(ordered[-1]) - 1.0


@dataclasses.dataclass
class PCABaseline:
    """PCA with ``n_components`` fitted on standardized training rows; scores a
    row by its mean squared residual (higher = more anomalous).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> line = np.outer(rng.normal(size=200), [1.0, 2.0, -1.0])
        >>> pca = PCABaseline.fit(line, 1)
        >>> bool(pca.score(np.array([[1.0, 2.0, -1.0], [1.0, -2.0, 1.0]]))[0] < 1e-12)
        True
    """

    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray

    @classmethod
    def fit(cls, rows: np.ndarray, n_components: int) -> PCABaseline:
        rows = np.asarray(rows, dtype=np.float64)
        mean = rows.mean(axis=0)
        scale = rows.std(axis=0)
        scale[scale == 0] = 1.0
        z = (rows - mean) / scale
        _, _, vt = np.linalg.svd(z, full_matrices=False)
        return cls(mean, scale, vt[: max(1, min(n_components, vt.shape[0]))])

    def score(self, rows: np.ndarray) -> np.ndarray:
        z = (np.asarray(rows, dtype=np.float64) - self.mean) / self.scale
        residual = z - (z @ self.components.T) @ self.components
        return np.mean(residual * residual, axis=1)


class IsolationForestBaseline:
    """scikit-learn's IsolationForest (its defaults) fitted on the training rows;
    a row's score is the negated ``score_samples`` (higher = more anomalous)."""

    def __init__(self, rows: np.ndarray, *, seed: int):
        from sklearn.ensemble import IsolationForest

        self.forest = IsolationForest(random_state=seed).fit(np.asarray(rows, dtype=np.float64))

    def score(self, rows: np.ndarray) -> np.ndarray:
        return -self.forest.score_samples(np.asarray(rows, dtype=np.float64))


def compare(labels, scores: dict, *, threshold: float, k: int | None = None) -> dict:
    """``metrics`` for every method: ``scores["autoenc"]`` at ``threshold``, the
    others at the threshold flagging as many rows as it does."""
    flagged = int((np.asarray(scores["autoenc"]) > threshold).sum())
    out = {}
    for name, values in scores.items():
        t = threshold if name == "autoenc" else threshold_for_count(values, flagged)
        out[name] = metrics(labels, values, threshold=t, k=k)
    return out


def format_table(results: dict) -> str:
    """The figures of ``compare`` as a plain-text table, one method a row.

    Example:
        >>> r = compare(np.array([0, 1], bool), {"autoenc": np.array([0.0, 1.0])}, threshold=0.5)
        >>> print(format_table(r))
        method             ROC-AUC  PR-AUC  prec@k     k    TP    FP    TN    FN
        autoenc             1.0000  1.0000  1.0000     1     1     0     1     0
    """
    header = f"{'method':<17} {'ROC-AUC':>8} {'PR-AUC':>7} {'prec@k':>7} {'k':>5} {'TP':>5} {'FP':>5} {'TN':>5} {'FN':>5}"
    lines = [header]
    for name, m in results.items():
        c = m["confusion"]
        p = "-" if m["precision_at_k"] is None else f"{m['precision_at_k']:.4f}"
        lines.append(
            f"{name:<17} {m['roc_auc']:>8.4f} {m['pr_auc']:>7.4f} {p:>7} {m['k']:>5} "
            f"{c['tp']:>5} {c['fp']:>5} {c['tn']:>5} {c['fn']:>5}"
        )
    return "\n".join(lines)
