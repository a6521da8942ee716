"""Training from staged rows, in the launching process: what ``autoenc train``
does after its Beam pass, and what ``autoenc.Autoencoder.fit`` does after
staging rows held in memory. One code path, so both give the same model.

Steps (``train_staged``): merge the staged chunks' statistics in their order,
normalize, fit (``autoenc.training.fit``), stream the validation rows for
their errors and the latent distribution, choose the threshold, and describe
everything in an ``ArtifactMetadata``.

Example:
    >>> ThresholdOptions(contamination=0.05).contamination
    0.05
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import platform

import numpy as np

from autoenc import artifact as artifacts
from autoenc import report
from autoenc.errors import InputError
from autoenc.preprocessing import MomentStats, Normalizer
from autoenc.scoring import (
    LatentDistribution,
    flag_rates,
    threshold_best_f1,
    threshold_for_fpr,
    threshold_from_contamination,
)
from autoenc.training import TENSOR_KINDS, TrainingConfig, fit, make_dataset, read_staged

# The staged parts: rows to train on, validation rows, rows labeled anomalous.
PARTS = ("train", "validation", "anomalies")
# The latent distribution is estimated on every validation row and at most
# this many training rows (the first staged chunks that hold them).
LATENT_TRAIN_ROWS = 100_000
# The latent distances' percentiles come from a uniform sample of at most
# this many validation rows (within about 0.003 of their level).
LATENT_QUANTILE_ROWS = 100_000


@dataclasses.dataclass(frozen=True)
class ThresholdOptions:
    """How to set the anomaly threshold (the ``train`` flags of the same names).

    Attributes:
        threshold: a fixed threshold, or ``None``.
        contamination: the share of validation rows above it, or ``None`` for
            the config's (or the best F1 when there are labels).
        target_fpr: with labels: the highest false-positive rate on rows labeled normal.
        label_column: the column of labels the rows were staged with, if any.
    """

    threshold: float | None = None
    contamination: float | None = None
    target_fpr: float | None = None
    label_column: str | None = None


def train_staged(
    config: TrainingConfig,
    spec,
    *,
    files: dict,
    headers: dict,
    counts: dict,
    threshold: ThresholdOptions,
    input_info: dict,
    verbose: int | str = 0,
):
    """Trains on staged rows and describes the model.

    Args:
        config: the hyperparameters.
        spec: the ``FeatureSpec``.
        files: part (``PARTS``) -> staged files, in canonical (name) order.
        headers: part -> their ``StagedHeader``s, in the same order.
        counts: row counts: ``read``, ``rejected`` and one per part.
        threshold: how to set the threshold.
        input_info: what ``metadata.json`` records of the input.
        verbose: the training progress shown (``autoenc.training.fit``): 0
            none, 1 a live line, 2 a log line every few epochs, ``"auto"``.

    Returns:
        ``(model, ArtifactMetadata)``.

    Raises:
        InputError: no rows to train or validate on, a normalization that
            cannot be computed, or a fit that diverged.
    """
    if counts["train"] == 0 or counts["validation"] == 0:
        raise InputError(
            f"No rows left to train on: {counts['read']} read, {counts['rejected']} rejected, "
            f"{counts['train']} for training, {counts['validation']} for validation."
        )
    # The training statistics: each staged chunk's, merged in the chunks'
    # order in the input, so they are the same however the work was split.
    stats = MomentStats.merge([h.stats for h in headers["train"]])
    try:
        normalizer = Normalizer.from_stats(stats, config.resolved_normalization, sizes=list(spec.model_sizes))
    except ValueError as e:
        raise InputError(f"Cannot normalize the training rows: {e}.") from e
    # Categorical one-hot blocks: reconstructed by a softmax, so left as 0/1
    # (pca reconstructs them linearly, as normalized values).
    blocks = spec.categorical_slots if config.model != "pca" else ()
    normalizer = normalizer.with_identity(blocks)
    shape = spec.features[0].shape if config.model in TENSOR_KINDS else None
    result = fit(
        config,
        categorical_blocks=blocks,
        n_features=spec.model_width,
        normalizer=normalizer,
        shape=shape,
        train_files=files["train"],
        val_files=files["validation"],
        n_train=counts["train"],
        n_val=counts["validation"],
        verbose=verbose,
    )
    from autoenc.scoring import Scorer

    # One scorer for the three passes: its scoring function is traced once.
    scorer = Scorer(result.model, normalizer, threshold=np.inf)
    validation = dict(files=files["validation"], n_features=spec.model_width, seed=config.seed)
    errors, moments, latents = _errors_and_moments(scorer, **validation, latents=LATENT_QUANTILE_ROWS)
    cutoff = None
    if config.trim > 0 and config.model != "pca" and len(errors):
        # The latent distribution leaves out the rows a trimmed fit leaves
        # out: those of the validation rows' highest trim share of errors.
        cutoff = float(np.quantile(errors, 1 - config.trim))
        _, moments, latents = _errors_and_moments(
            scorer, **validation, latents=LATENT_QUANTILE_ROWS, max_error=cutoff
        )
    anomaly_errors, _, _ = _errors_and_moments(scorer, files["anomalies"], spec.model_width, seed=config.seed)
    _, train_moments, _ = _errors_and_moments(
        scorer,
        files["train"],
        spec.model_width,
        max_rows=LATENT_TRAIN_ROWS,
        seed=config.seed,
        max_error=cutoff,
    )
    if not (np.isfinite(errors).all() and np.isfinite(result.val_loss).any()):
        raise InputError(
            "Training diverged: the validation errors are not finite numbers. Check the input for "
            "extreme values (see --extreme_value_spreads) or lower --learning_rate."
        )
    # The unit of total_distance's error: the mean of the validation errors
    # the latent moments came from (below the trim cutoff when trimming).
    kept = errors if cutoff is None else errors[errors <= cutoff]
    latent_distribution = dataclasses.replace(
        LatentDistribution.from_moments(*_add(moments, train_moments)).with_quantiles(latents),
        error_mean=float(np.mean(kept)),
    )
    chosen, method = choose_threshold(
        threshold, config, errors, anomaly_errors, normal_rows=counts["train"] + counts["validation"]
    )
    metadata = artifacts.ArtifactMetadata(
        spec=spec,
        model_kind=config.model,
        hyperparameters=config.to_dict(),
        latent_dim=config.resolved_latent_dim(spec.model_width),
        normalization=normalizer,
        threshold=chosen,
        threshold_method=method,
        validation_error_quantiles=np.quantile(errors, np.linspace(0, 1, 101)).tolist(),
        latent_distribution=latent_distribution,
        history={
            "loss": result.loss,
            "val_loss": result.val_loss,
            "best_epoch": result.best_epoch,
            "warmup_val_loss": result.warmup,
            "start": result.start,
            "epoch_seconds": result.epoch_seconds,
        },
        rows={
            "read": counts["read"],
            "used": counts["train"] + counts["validation"],
            "train": counts["train"],
            "validation": counts["validation"],
            "rejected": counts["rejected"],
            **({"labeled_anomalous": counts["anomalies"]} if threshold.label_column else {}),
            **{k: counts[k] for k in ("imputed_rows", "imputed_values") if k in counts},
        },
        input={**input_info, "determinism": {**input_info.get("determinism", {}), **fingerprint(headers)}},
        library_versions=library_versions(),
        created_at=artifacts.utc_now(),
    )
    return result.model, metadata


def fingerprint(headers: dict) -> dict:
    """The staged chunks and a fingerprint of the staged training and
    validation rows (each chunk's rows and statistics, in canonical order):
    with the seed, the split and the library versions, what decides the model."""
    import hashlib

    digest = hashlib.sha256()
    for part in ("train", "validation"):
        for header in headers[part]:
            digest.update(part.encode())
            digest.update(np.float64(header.rows).tobytes())
            digest.update(header.stats.to_array().astype("<f8").tobytes())
    return {
        "staged_chunks": {part: len(headers[part]) for part in PARTS},
        "staged_rows_fingerprint": digest.hexdigest(),
    }


def choose_threshold(
    opt: ThresholdOptions, config, errors, anomaly_errors, *, normal_rows: int
) -> tuple[float, dict]:
    """The model's threshold and how it was chosen: ``--threshold``,
    ``--target_fpr`` or the best F1 (with ``--label_column``), else
    ``--contamination`` (default 0.01) of the validation errors.

    With labels, ``errors`` are those of the validation rows labeled normal and
    ``anomaly_errors`` those of every row labeled anomalous (none of which was
    trained on); for F1 each validation row stands for ``normal_rows / len(errors)``
    normal rows, so precision is that of the whole data.
    """
    weight = normal_rows / max(len(errors), 1)
    if opt.threshold is not None:
        threshold, method = float(opt.threshold), {"method": "fixed"}
    elif opt.target_fpr is not None:
        threshold = threshold_for_fpr(errors, opt.target_fpr)
        method = {"method": "target_fpr", "target_fpr": opt.target_fpr}
    elif opt.label_column and opt.contamination is None:
        threshold = threshold_best_f1(errors, anomaly_errors, normal_weight=weight)
        method = {"method": "best_f1"}
    else:
        threshold = threshold_from_contamination(errors, config.contamination)
        method = {"method": "contamination", "contamination": config.contamination}
    method["validation_rows"] = int(len(errors))
    if opt.label_column:
        method["label_column"] = opt.label_column
        method["on_labeled_rows"] = flag_rates(errors, anomaly_errors, threshold, normal_weight=weight)
    return threshold, method


def _errors_and_moments(
    scorer, files, n_features, *, max_rows=None, seed=0, latents: int = 0, max_error: float | None = None
):
    """Reconstruction errors of staged rows (by ``scorer``, a ``Scorer``),
    streamed, the moments of their latent vectors (``latent_moments``
    summed) and a uniform sample of at most ``latents`` of those vectors
    (with ``max_error``: of the rows whose error is at most that);
    with ``max_rows`` the rows of the first chunks that hold that many. The
    errors kept are a uniform sample of at most
    ``autoenc.reservoir.MAX_ROWS`` (all of them below that), so memory does
    not grow with the validation rows."""
    from autoenc.reservoir import Reservoir
    from autoenc.scoring import MODEL_BATCH_BYTES, latent_moments

    batch = max(1, min(65536, MODEL_BATCH_BYTES // (4 * n_features)))
    ds = make_dataset(
        files, n_features, scorer.normalizer, batch_size=batch, n_rows=0, shuffle=False, seed=0, cache=False
    )
    kept, moments = Reservoir(seed=seed), None
    sample = Reservoir(latents, seed=seed + 1) if latents else None
    for x, _ in ds:
        scores = scorer.score_normalized(x.numpy())
        kept.add(error=scores.reconstruction_error)
        usable = ~scores.extreme
        if max_error is not None:
            usable &= scores.reconstruction_error <= max_error
        moments = _add(moments, latent_moments(scores.latent[usable]))
        if sample is not None:
            sample.add(latent=scores.latent[usable])
        if max_rows is not None and moments[0] >= max_rows:
            break
    latent = sample.columns().get("latent") if sample is not None else None
    return (
        kept.columns().get("error", np.zeros(0)),
        moments,
        latent if latent is not None else np.zeros((0, 0)),
    )


def _add(a, b):
    """Sums of moment tuples; ``None`` is nothing."""
    return b if a is None else a if b is None else tuple(x + y for x, y in zip(a, b, strict=True))


def library_versions() -> dict:
    versions = {"python": platform.python_version()}
    for dist in ("autoenc", "tensorflow", "keras", "apache-beam", "pyarrow", "numpy"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def write_training_report(path, metadata, version, model, staged, *, wall_s: float) -> None:
    """``report.html`` of a training run: its loss curves and its validation rows
    (rows labeled anomalous shown beside them)."""
    from autoenc.scoring import Scorer

    spec = metadata.spec
    sizes = list(spec.model_sizes)
    scorer = Scorer(
        model,
        metadata.normalization,
        metadata.threshold,
        metadata.validation_error_quantiles,
        feature_sizes=sizes,
        top_k=min(3, len(sizes)),
    )
    shape = report.image_shape(spec, metadata.model_kind)
    chunks = [(name, read_staged(staged[name], spec.model_width)) for name in ("validation", "anomalies")]
    labeled = bool(metadata.input.get("label_column")) and bool(metadata.rows.get("labeled_anomalous"))

    def rows():
        for name, parts in chunks if labeled else chunks[:1]:
            for chunk in parts:
                yield np.column_stack([chunk, np.full(len(chunk), name == "anomalies", np.float64)])

    sample = report.collect_sample(rows(), scorer, autoencoder=model if shape else None, with_labels=True)
    if not labeled:
        sample.labels = None
    rows_text = ", ".join(f"{k} {v}" for k, v in metadata.rows.items())
    method = metadata.threshold_method
    facts = {
        "model version": version,
        "model kind": metadata.model_kind,
        "features": ", ".join(f.describe() for f in spec.features),
        "latent width": metadata.latent_dim,
        "rows": rows_text,
        "threshold": f"{metadata.threshold:.6g} ({method['method']})",
        "best epoch": f"{metadata.history['best_epoch']} of {len(metadata.history['loss'])}",
        "training input": metadata.input["pattern"],
        "training time": f"{wall_s:.1f} s",
        "created": metadata.created_at,
    }
    report.write(
        path,
        report.render(
            title=f"autoenc model {version}",
            facts=facts,
            sample=sample,
            threshold=metadata.threshold,
            feature_names=list(spec.model_names),
            feature_sizes=sizes,
            shape=shape,
            categories=report.category_labels(spec),
            history=metadata.history,
            what="validation rows" + (" and rows labeled anomalous" if labeled else ""),
        ),
    )
