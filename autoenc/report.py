"""``report.html``: one self-contained page about a model or an evaluation.

Figures are drawn with matplotlib's Agg canvas (no display, no pyplot state)
and embedded as base64 PNG, so the file can be mailed, attached to a ticket or
opened from object storage with nothing else beside it. No scripts, no
external fonts or styles.

Sections (each only when its data is there): the facts (model, rows,
threshold); metrics per method and ROC / precision-recall curves (evaluate);
training and validation loss per epoch; the error histogram with the
threshold; the latent space in 2-D (the first two dimensions, a PCA of a wider
latent, or a 1-wide latent against the error); for an image feature, originals /
latent / reconstructions; and the highest-error rows with their top features.

Example:
    >>> import numpy as np
    >>> sample = collect_sample(iter([]), scorer=None)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io

import numpy as np

TOP_ROWS = 10
MAX_POINTS = 5000
IMAGE_ROWS = 8


@dataclasses.dataclass
class Sample:
    """What a report shows of a set of scored rows.

    Attributes:
        errors: every row's reconstruction error (a uniform sample of
            ``autoenc.reservoir.MAX_ROWS`` rows when there are more: see ``rows``).
        labels: those rows' labels (True = anomalous), or ``None``.
        latent: latent vectors of the first ``MAX_POINTS`` rows (NaN for a row
            beyond the model's float32 range).
        top: the ``TOP_ROWS`` highest-error rows: dicts with ``error``,
            ``anomaly_score``, ``latent_distance``,
            ``values`` (raw features), ``top`` [(feature index, share)], ``label``.
        images: for an image feature, (originals, latents, reconstructions) of
            the first ``IMAGE_ROWS`` rows in normalized units, else ``None``.
        latent_distances: the sampled rows' latent distances, or ``None`` when the
            scorer has no latent distribution.
        extra: other per-row figures given with the chunks, for the sampled rows.
        rows: rows seen (``len(errors)`` unless they were sampled).
        latent_errors, latent_labels: errors and labels of the ``latent`` rows.
    """

    errors: np.ndarray
    labels: np.ndarray | None
    latent: np.ndarray
    top: list
    images: tuple | None = None
    latent_distances: np.ndarray | None = None
    extra: dict = dataclasses.field(default_factory=dict)
    rows: int = 0
    latent_errors: np.ndarray | None = None
    latent_labels: np.ndarray | None = None


def collect_sample(
    chunks, scorer, *, autoencoder=None, with_labels: bool = False, extra_scores=None, seed: int = 0
) -> Sample:
    """Scores raw feature chunks and keeps what a report shows.

    Memory is bounded whatever the number of rows: the per-row figures are a
    uniform sample of at most ``autoenc.reservoir.MAX_ROWS`` rows (every row
    below that), the latent vectors those of the first ``MAX_POINTS``.

    Args:
        chunks: iterable of float64 arrays [n, n_values] of raw features (plus the
            label as a last column when ``with_labels``).
        scorer: an ``autoenc.scoring.Scorer`` with ``top_k`` > 0 (for top features).
        autoencoder: the Keras model, for reconstructed images; ``None`` for no images.
        with_labels: the chunks carry a label column.
        extra_scores: a function of a chunk's raw features returning a dict of
            other per-row figures to keep for the same sampled rows (e.g.
            baseline methods' scores).
        seed: seeds the sample.
    """
    from autoenc.reservoir import Reservoir

    kept = Reservoir(seed=seed)
    latent, latent_errors, latent_labels, top = [], [], [], []
    images = None
    n_latent = 0
    for chunk in chunks:
        features = chunk[:, :-1] if with_labels else chunk
        scores = scorer.score(features)
        columns = {"error": scores.reconstruction_error}
        if scores.latent_distance is not None:
            columns["latent_distance"] = scores.latent_distance
        if scores.combined_score is not None:
            columns["extra:combined"] = scores.combined_score
        if scores.total_distance is not None:
            columns["extra:total"] = scores.total_distance
        if with_labels:
            columns["label"] = chunk[:, -1] > 0.5
        if extra_scores is not None:
            columns.update({f"extra:{k}": v for k, v in extra_scores(features).items()})
        kept.add(**columns)
        if n_latent < MAX_POINTS:
            take = MAX_POINTS - n_latent
            latent.append(scores.latent[:take])
            latent_errors.append(scores.reconstruction_error[:take])
            if with_labels:
                latent_labels.append(columns["label"][:take])
            n_latent += len(latent[-1])
        if autoencoder is not None and images is None and len(features):
            from autoenc.models import scoring_model

            x = scorer.normalizer.transform(features[:IMAGE_ROWS]).astype(np.float32)
            x = np.where(np.isfinite(x), x, np.float32(0))
            z, reconstruction = scoring_model(autoencoder)([x], training=False)
            images = (x, np.asarray(z), np.asarray(reconstruction).reshape(len(x), -1))
        order = np.argsort(-scores.reconstruction_error, kind="stable")[:TOP_ROWS]
        for i in order:
            top.append(
                {
                    "error": float(scores.reconstruction_error[i]),
                    "anomaly_score": None if scores.anomaly_score is None else float(scores.anomaly_score[i]),
                    "latent_distance": None
                    if scores.latent_distance is None
                    else float(scores.latent_distance[i]),
                    "values": features[i],
                    "top": []
                    if scores.top_features is None
                    else list(
                        zip(scores.top_features[i].tolist(), scores.top_shares[i].tolist(), strict=True)
                    ),
                    "label": bool(chunk[i, -1] > 0.5) if with_labels else None,
                }
            )
        top = sorted(top, key=lambda row: -row["error"])[:TOP_ROWS]
    sampled = kept.columns()
    return Sample(
        errors=sampled.get("error", np.zeros(0)),
        labels=sampled.get("label", np.zeros(0, bool)) if with_labels else None,
        latent=np.concatenate(latent) if latent else np.zeros((0, 0), np.float32),
        top=top,
        images=images,
        latent_distances=sampled.get("latent_distance"),
        extra={k.removeprefix("extra:"): v for k, v in sampled.items() if k.startswith("extra:")},
        rows=kept.rows,
        latent_errors=np.concatenate(latent_errors) if latent_errors else np.zeros(0),
        latent_labels=np.concatenate(latent_labels) if latent_labels else None,
    )


def _png(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(width=7.0, height=3.6):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def loss_figure(history: dict) -> str:
    fig = _figure()
    ax = fig.add_subplot()
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    ax.plot(epochs, history["loss"], label="training loss")
    if history.get("val_loss"):
        ax.plot(epochs, history["val_loss"], label="validation loss")
    if history.get("best_epoch"):
        ax.axvline(
            history["best_epoch"], color="grey", linestyle=":", label=f"best epoch ({history['best_epoch']})"
        )
    if np.all(np.asarray(history["loss"]) > 0):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    return _png(fig)


def _bins(values: np.ndarray):
    positive = values[values > 0]
    if len(positive) and positive.max() / positive.min() > 100:
        return np.geomspace(positive.min(), positive.max(), 60), True
    return 60, False


def histogram_figure(
    errors: np.ndarray, threshold: float, labels: np.ndarray | None = None, *, what: str
) -> str:
    fig = _figure()
    ax = fig.add_subplot()
    finite = np.isfinite(errors)
    if not finite.all():
        # Rows beyond the model's float32 range (error +inf) cannot be drawn.
        errors, labels = errors[finite], None if labels is None else labels[finite]
    bins, log = _bins(errors)
    if labels is None:
        ax.hist(errors, bins=bins, color="#4c72b0", label=what)
    else:
        ax.hist(errors[~labels], bins=bins, alpha=0.6, color="#4c72b0", label="labeled normal")
        ax.hist(errors[labels], bins=bins, alpha=0.6, color="#dd5145", label="labeled anomalous")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    if log:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("reconstruction error (higher = more anomalous)")
    ax.set_ylabel("rows")
    ax.legend()
    return _png(fig)


def latent_figure(
    latent: np.ndarray, errors: np.ndarray, labels: np.ndarray | None = None
) -> tuple[str, str]:
    """The latent space in 2-D, colored by label or error; and how it was drawn."""
    fig = _figure(6.0, 4.6)
    ax = fig.add_subplot()
    n = len(latent)
    errors, labels = errors[:n], None if labels is None else labels[:n]
    # Rows beyond the model's float32 range have no latent to draw.
    drawable = np.isfinite(latent).all(axis=1) & np.isfinite(errors)
    if not drawable.all():
        latent, errors = latent[drawable], errors[drawable]
        labels = None if labels is None else labels[drawable]
    width = latent.shape[1]
    if width == 1:
        x, y, how = latent[:, 0], errors, "the 1-wide latent (x) against the reconstruction error (y)"
        ax.set_xlabel("latent[0]")
        ax.set_ylabel("reconstruction error")
        if np.all(errors > 0):
            ax.set_yscale("log")
    elif width == 2:
        x, y, how = latent[:, 0], latent[:, 1], "the two latent dimensions"
        ax.set_xlabel("latent[0]")
        ax.set_ylabel("latent[1]")
    else:
        centered = latent - latent.mean(axis=0)
        _, _, vt = np.linalg.svd(centered, full_matrices=False)
        projected = centered @ vt[:2].T
        x, y, how = (
            projected[:, 0],
            projected[:, 1],
            f"the first two principal components of the {width}-wide latent",
        )
        ax.set_xlabel("PC 1 of the latent")
        ax.set_ylabel("PC 2 of the latent")
    if labels is not None:
        ax.scatter(x[~labels], y[~labels], s=4, alpha=0.5, color="#4c72b0", label="labeled normal")
        ax.scatter(x[labels], y[labels], s=8, alpha=0.8, color="#dd5145", label="labeled anomalous")
        ax.legend()
    else:
        points = ax.scatter(x, y, s=4, c=np.log10(np.maximum(errors, 1e-12)), cmap="viridis")
        fig.colorbar(points, ax=ax, label="log10 reconstruction error")
    return _png(fig), how


def images_figure(images: tuple, shape: tuple[int, ...]) -> str:
    """Originals, latent vectors and reconstructions, one column per row."""
    originals, latents, reconstructions = images
    m = len(originals)
    fig = _figure(1.3 * m + 0.5, 4.4)
    axes = fig.subplots(3, m, squeeze=False)
    image_shape = shape[:2] if len(shape) >= 2 else (1, shape[0])
    channels = shape[2] if len(shape) == 3 else 1
    for j in range(m):
        for row, values in ((0, originals[j]), (2, reconstructions[j])):
            picture = values.reshape(*image_shape, channels)
            picture = picture[..., 0] if channels == 1 else np.clip(picture, 0, 1)
            axes[row][j].imshow(picture, cmap="gray" if channels == 1 else None)
        code = latents[j].reshape(1, -1)
        axes[1][j].imshow(code, cmap="coolwarm", aspect="auto")
        for row in range(3):
            axes[row][j].set_xticks([])
            axes[row][j].set_yticks([])
    for row, name in enumerate(("original", "latent", "reconstruction")):
        axes[row][0].set_ylabel(name)
    return _png(fig)


def top_images_figure(top: list, shape: tuple[int, ...]) -> str:
    """The highest-error rows' images, titled with their errors."""
    m = len(top)
    fig = _figure(1.3 * m + 0.5, 1.8)
    axes = fig.subplots(1, m, squeeze=False)[0]
    image_shape = shape[:2] if len(shape) >= 2 else (1, shape[0])
    channels = shape[2] if len(shape) == 3 else 1
    for ax, row in zip(axes, top, strict=True):
        picture = np.asarray(row["values"]).reshape(*image_shape, channels)
        if channels == 1:
            ax.imshow(picture[..., 0], cmap="gray")
        else:
            low, high = picture.min(), picture.max()
            ax.imshow((picture - low) / (high - low or 1.0))
        ax.set_title(f"{row['error']:.3g}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    return _png(fig)


def curves_figure(labels: np.ndarray, scores: dict) -> str:
    from sklearn.metrics import precision_recall_curve, roc_curve

    from autoenc.evaluation import finite_scores

    fig = _figure(9.0, 3.8)
    roc, pr = fig.subplots(1, 2)
    for name, values in scores.items():
        values = finite_scores(values)
        fpr, tpr, _ = roc_curve(labels, values)
        roc.plot(fpr, tpr, label=name)
        precision, recall, _ = precision_recall_curve(labels, values)
        pr.plot(recall, precision, label=name)
    roc.plot([0, 1], [0, 1], color="grey", linestyle=":")
    roc.set_xlabel("false-positive rate")
    roc.set_ylabel("true-positive rate")
    roc.set_title("ROC")
    pr.axhline(labels.mean(), color="grey", linestyle=":")
    pr.set_xlabel("recall")
    pr.set_ylabel("precision")
    pr.set_title("precision-recall")
    roc.legend()
    return _png(fig)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f4f4f4; } td.text, th.text { text-align: left; }
img { max-width: 100%; height: auto; } p.note { color: #555; font-size: 0.9em; }
"""


def _table(header: list[str], rows: list[list], text_columns=(0,)) -> str:
    def cell(tag, i, value):
        cls = ' class="text"' if i in text_columns else ""
        return f"<{tag}{cls}>{html.escape(str(value))}</{tag}>"

    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(cell("th", i, h) for i, h in enumerate(header)) + "</tr>")
    out += ["<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows]
    return "".join(out) + "</table>"


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render(
    *,
    title: str,
    facts: dict,
    sample: Sample,
    threshold: float,
    feature_names: list[str],
    feature_sizes: list[int],
    shape: tuple[int, ...] | None = None,
    history: dict | None = None,
    results: dict | None = None,
    method_scores: dict | None = None,
    what: str = "validation rows",
    categories: dict[int, list[str]] | None = None,
) -> str:
    """The report as one HTML string (see the module docstring for its sections).

    ``categories``: for each categorical feature (by its index in
    ``feature_names``), the labels of its one-hot slots, so that the
    highest-error rows show its category."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _table([], [[k, _fmt(v)] for k, v in facts.items()], text_columns=(0, 1)),
    ]

    def figure(heading, uri, alt, note=None):
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if note:
            parts.append(f"<p class='note'>{html.escape(note)}</p>")
        parts.append(f"<img src='{uri}' alt='{html.escape(alt)}'>")

    if results:
        parts.append("<h2>Metrics</h2>")
        rows = []
        for name, m in results.items():
            c = m["confusion"]
            rows.append(
                [name, _fmt(m["roc_auc"]), _fmt(m["pr_auc"]), _fmt(m["precision_at_k"]), m["k"],
                 _fmt(m["threshold"]), c["tp"], c["fp"], c["tn"], c["fn"]]
            )  # fmt: skip
        parts.append(
            _table(
                ["method", "ROC-AUC", "PR-AUC", "precision@k", "k", "threshold", "TP", "FP", "TN", "FN"], rows
            )
        )
        parts.append(
            "<p class='note'>Scores: higher = more anomalous. The model is cut at its threshold; "
            "PCA and IsolationForest at the threshold that flags as many rows.</p>"
        )
    if method_scores and sample.labels is not None:
        figure(
            "ROC and precision-recall curves",
            curves_figure(sample.labels, method_scores),
            "ROC and PR curves",
        )
    if history and history.get("loss"):
        figure("Loss per epoch", loss_figure(history), "training and validation loss per epoch")
    if len(sample.errors):
        figure(
            "Reconstruction error",
            histogram_figure(sample.errors, threshold, sample.labels, what=what),
            "histogram of reconstruction errors with the threshold",
            f"{len(sample.errors)} {what}; rows right of the dashed line are flagged as anomalies.",
        )
    if sample.latent.size:
        uri, how = latent_figure(
            sample.latent,
            sample.errors if sample.latent_errors is None else sample.latent_errors,
            sample.labels if sample.latent_errors is None else sample.latent_labels,
        )
        figure("Latent space", uri, "latent space scatter plot", f"{len(sample.latent)} {what}: {how}.")
    if sample.images is not None and shape:
        figure(
            "Originals, latent vectors and reconstructions",
            images_figure(sample.images, shape),
            "original images, their latent vectors and reconstructions",
            "Normalized units, as the model sees them.",
        )
    if sample.top:
        parts.append(f"<h2>Highest-error {html.escape(what)}</h2>")
        offsets = np.concatenate([[0], np.cumsum(feature_sizes)])
        categories = categories or {}
        scalar = all(size == 1 or j in categories for j, size in enumerate(feature_sizes))

        def value(values, j):
            if j in categories:
                return categories[j][int(np.argmax(values[offsets[j] : offsets[j + 1]]))]
            return _fmt(float(values[offsets[j]]))

        header = [
            "#",
            "reconstruction error",
            "anomaly score",
            "latent distance",
            "top features (share of the error)",
        ]
        if sample.labels is not None:
            header.append("label")
        if scalar:
            header += feature_names[:8]
        rows = []
        for i, row in enumerate(sample.top, start=1):
            top = ", ".join(f"{feature_names[j]} ({share:.0%})" for j, share in row["top"])
            line = [i, _fmt(row["error"]), _fmt(row["anomaly_score"]), _fmt(row["latent_distance"]), top]
            if sample.labels is not None:
                line.append("anomalous" if row["label"] else "normal")
            if scalar:
                line += [value(row["values"], j) for j in range(min(8, len(feature_names)))]
            rows.append(line)
        parts.append(_table(header, rows, text_columns=(4, 5) if sample.labels is not None else (4,)))
        if shape:
            parts.append(
                f"<img src='{top_images_figure(sample.top, shape)}' alt='the highest-error rows as images'>"
            )
    parts.append("</body></html>")
    return "\n".join(parts)


def category_labels(spec) -> dict[int, list[str]]:
    """``render``'s ``categories`` for a feature spec."""
    from autoenc.categorical import OOV

    return {
        j: ["(null)" if c is None else c for c in f.categories] + [OOV]
        for j, f in enumerate(spec.features)
        if f.categorical
    }


def image_shape(spec, model_kind: str) -> tuple[int, ...] | None:
    """The image shape to draw originals and reconstructions in: one tensor
    feature that is an image (a conv model's, or any H,W,C), else ``None``."""
    if spec.n_features != 1 or not spec.features[0].shape:
        return None
    shape = tuple(spec.features[0].shape)
    return shape if model_kind == "conv" or len(shape) == 3 else None


def write(path: str, text: str) -> None:
    """Writes the report (any filesystem ``tf.io.gfile`` knows)."""
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)
