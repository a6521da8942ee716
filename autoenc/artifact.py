"""The versioned model artifact: everything scoring needs, validated on load.

Layout of a model directory::

    MODEL_DIR/
      LATEST                 the name of the newest complete version (one line)
      <version>/
        model.keras          the Keras autoencoder (loaded with safe_mode=True)
        metadata.json        features, normalization, threshold, latent distribution,
                             history, versions
        report.html          the training report (written by the training pipeline)
        rejected/            rows the training run rejected, with reasons

``write_artifact`` writes ``model.keras``, then ``metadata.json``, loads the
version back to prove it is complete, and only then replaces ``LATEST`` (written
to a temporary name and renamed). A crash at any moment leaves ``LATEST`` on the
previous good version. Paths may be local or any filesystem TensorFlow's
``tf.io.gfile`` knows (``gs://`` included).

Example:
    >>> artifact = load_artifact("models/my-model")          # doctest: +SKIP
    >>> artifact.version, artifact.metadata.latent_dim       # doctest: +SKIP
    ('20261126T171500Z-3f9a1c', 1)
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import re
import secrets
import tempfile
from typing import Any

import numpy as np

from autoenc.errors import ArtifactError
from autoenc.preprocessing import NORMALIZATIONS, Normalizer
from autoenc.schema import FeatureSpec

# The metadata layout: 2 added categorical features (``categories``), and is
# written only by models that have them, so that a release that reads only
# layout 1 refuses such a model instead of misreading it.
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
LATEST_FILE = "LATEST"


@dataclasses.dataclass(frozen=True)
class ArtifactMetadata:
    """The content of ``metadata.json``.

    Attributes:
        spec: feature columns in model order, and key columns.
        model_kind: key of ``autoenc.models.BUILDERS``.
        hyperparameters: the ``TrainingConfig`` used, as a dict.
        latent_dim: width of the latent vector.
        normalization: ``Normalizer`` fitted on the training rows.
        threshold: reconstruction errors above it are anomalies.
        threshold_method: how the threshold was chosen, with its parameters, e.g.
            ``{"method": "contamination", "contamination": 0.01}``.
        validation_error_quantiles: the 0, 1, ..., 100th percentiles of the
            validation rows' reconstruction errors.
        history: ``{"loss": [...], "val_loss": [...], "best_epoch": n, ...}`` (also the
            start-selection losses and the chosen start).
        rows: row counts: ``read``, ``used``, ``train``, ``validation``, ``rejected``.
        input: where the training data came from (``pattern``, ``format``).
        library_versions: versions of autoenc and its dependencies.
        created_at: ISO 8601 UTC time of creation.
        latent_distribution: the validation rows' latent mean and precision
            (``autoenc.scoring.LatentDistribution``), for ``latent_distance``
            (and their mean error, for ``total_distance``);
            ``None`` in artifacts written before it existed.
        format_version: the metadata layout read (``None`` for metadata not
            read from a file: written as 2 with categorical features, else 1).
    """

    spec: FeatureSpec
    model_kind: str
    hyperparameters: dict
    latent_dim: int
    normalization: Normalizer
    threshold: float
    threshold_method: dict
    validation_error_quantiles: list[float]
    history: dict
    rows: dict
    input: dict
    library_versions: dict
    created_at: str
    latent_distribution: Any = None
    format_version: int | None = None

    @property
    def combined_score(self) -> bool:
        """Whether the model scores ``combined_score`` (it keeps its validation
        rows' latent-distance percentiles)."""
        return (
            self.latent_distribution is not None and self.latent_distribution.distance_quantiles is not None
        )

    @property
    def total_distance(self) -> bool:
        """Whether the model scores ``total_distance`` (it keeps the mean
        error of its validation rows)."""
        return self.latent_distribution is not None and self.latent_distribution.error_mean is not None

    def to_json(self) -> str:
        d = {
            "format_version": FORMAT_VERSION if self.spec.categorical_features else 1,
            "created_at": self.created_at,
            "model": {
                "kind": self.model_kind,
                "latent_dim": self.latent_dim,
                "hyperparameters": self.hyperparameters,
            },
            **self.spec.to_dict(),
            "normalization": {
                "method": self.normalization.method,
                "mean": self.normalization.mean.tolist(),
                "scale": self.normalization.scale.tolist(),
            },
            "threshold": {"value": self.threshold, **self.threshold_method},
            "validation_error_quantiles": self.validation_error_quantiles,
            **(
                {"latent_distribution": self.latent_distribution.to_dict()}
                if self.latent_distribution is not None
                else {}
            ),
            "history": self.history,
            "rows": self.rows,
            "input": self.input,
            "library_versions": self.library_versions,
        }
        return json.dumps(d, indent=2)

    @classmethod
    def from_json(cls, text: str, *, path: str) -> ArtifactMetadata:
        """Parses and validates ``metadata.json`` content read from ``path``.

        Raises:
            ArtifactError: naming the file and field that is wrong and what was expected.
        """
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{path} is not valid JSON ({e}). The artifact is damaged; retrain.") from e
        check = _Checker(path)
        check.object(d, "")
        version = check.get(d, "format_version", int)
        if version not in READABLE_FORMATS:
            raise ArtifactError(
                f"{path}: format_version is {version}, this autoenc reads format_version "
                f"{' and '.join(map(str, READABLE_FORMATS))}. Use the autoenc version that wrote it, or retrain."
            )
        model = check.get(d, "model", dict)
        features = check.get(d, "features", list)
        if not features:
            check.fail("features", "a non-empty list", features)
        for i, f in enumerate(features):
            check.object(f, f"features[{i}]")
            check.get(f, "name", str, where=f"features[{i}].")
            check.get(f, "dtype", str, where=f"features[{i}].")
        keys = check.get(d, "key_columns", list)
        if not all(isinstance(k, str) for k in keys):
            check.fail("key_columns", "a list of column names", keys)
        try:
            spec = FeatureSpec.from_dict(d)
        except ValueError as e:
            raise ArtifactError(f"{path}: {e}. The artifact is damaged; retrain.") from e
        norm = check.get(d, "normalization", dict)
        arrays = {}
        for name in ("mean", "scale"):
            value = check.get(norm, name, list, where="normalization.")
            array = (
                np.asarray(value, dtype=np.float64)
                if all(isinstance(v, (int, float)) for v in value)
                else None
            )
            if array is None or array.shape != (spec.model_width,) or not np.isfinite(array).all():
                check.fail(
                    f"normalization.{name}",
                    f"{spec.model_width} finite numbers (one per model input value)",
                    value,
                )
            arrays[name] = array
        if (arrays["scale"] <= 0).any():
            check.fail("normalization.scale", "positive numbers", norm["scale"])
        method = norm.get("method", "zscore")
        if method not in NORMALIZATIONS:
            check.fail("normalization.method", f"one of {', '.join(NORMALIZATIONS)}", method)
        threshold = check.get(d, "threshold", dict)
        value = check.get(threshold, "value", (int, float), where="threshold.")
        if not math.isfinite(value):
            check.fail("threshold.value", "a finite number", value)
        latent_dim = check.get(model, "latent_dim", int, where="model.")
        if latent_dim < 1:
            check.fail("model.latent_dim", "a positive integer", latent_dim)
        return cls(
            spec=spec,
            latent_distribution=_latent_distribution(check, d, latent_dim),
            model_kind=_model_kind(check, model),
            hyperparameters=check.get(model, "hyperparameters", dict, where="model."),
            latent_dim=latent_dim,
            normalization=Normalizer(mean=arrays["mean"], scale=arrays["scale"], method=method),
            threshold=float(value),
            threshold_method={k: v for k, v in threshold.items() if k != "value"},
            validation_error_quantiles=_quantiles(check, d),
            history=check.get(d, "history", dict),
            rows=check.get(d, "rows", dict),
            input=check.get(d, "input", dict),
            library_versions=check.get(d, "library_versions", dict),
            created_at=check.get(d, "created_at", str),
            format_version=version,
        )


class _Checker:
    """Field access on parsed JSON that fails with the file and field named."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, field: str, expected: str, value: Any):
        shown = json.dumps(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise ArtifactError(
            f"{self.path}: field '{field}' should be {expected}. Received: {shown}. "
            "The artifact is damaged or was edited by hand; retrain, or point "
            "--model_version at a good version."
        )

    def object(self, value: Any, where: str):
        if not isinstance(value, dict):
            self.fail(where or "(top level)", "a JSON object", value)

    def get(self, d: dict, key: str, kind, *, where: str = ""):
        if key not in d:
            raise ArtifactError(
                f"{self.path}: required field '{where}{key}' is missing. The artifact is "
                "incomplete or from another tool; retrain."
            )
        value = d[key]
        bad_bool = isinstance(value, bool) and kind in (int, float, (int, float))
        if bad_bool or not isinstance(value, kind):
            names = {
                dict: "a JSON object",
                list: "a list",
                str: "a string",
                int: "an integer",
                (int, float): "a number",
            }
            self.fail(f"{where}{key}", names.get(kind, str(kind)), value)
        return value


@dataclasses.dataclass(frozen=True)
class ModelArtifact:
    """A loaded, validated model version.

    Attributes:
        path: the version directory.
        version: the version name.
        metadata: the validated ``metadata.json``.
        model: the Keras autoencoder.
    """

    path: str
    version: str
    metadata: ArtifactMetadata
    model: Any

    def scorer(self, threshold: float | None = None, top_k: int = 0, error_map: bool = False):
        """A ``autoenc.scoring.Scorer`` with this artifact's normalization, its
        validation-error quantiles and its threshold (or ``threshold``), naming
        the ``top_k`` features with the largest share of each row's error."""
        from autoenc.scoring import Scorer

        return Scorer(
            self.model,
            self.metadata.normalization,
            self.metadata.threshold if threshold is None else threshold,
            self.metadata.validation_error_quantiles,
            feature_sizes=list(self.metadata.spec.model_sizes),
            top_k=top_k,
            error_map=error_map,
            latent_distribution=self.metadata.latent_distribution,
        )


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def join(*parts: str) -> str:
    """Joins path parts with '/', for local paths and URLs like gs:// alike."""
    return "/".join([parts[0].rstrip("/")] + [p.strip("/") for p in parts[1:]])


def new_version() -> str:
    """A new version name: UTC time, then a random suffix; sorts by time."""
    now = datetime.datetime.now(datetime.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _write_text(path: str, text: str) -> None:
    with _gfile().GFile(path, "w") as f:
        f.write(text)


def write_artifact(model_dir: str, version: str, model, metadata: ArtifactMetadata) -> ModelArtifact:
    """Writes a version, checks it loads, then points ``LATEST`` at it.

    ``metadata.json`` is written last, by a write-then-rename, and a version
    is listed (``list_versions``) only once it is there: a crash at any moment
    leaves either no listed version or a complete one. If the version does
    not load back, its files are deleted before the error is raised.

    Args:
        model_dir: the model directory (created if needed).
        version: the version name (``new_version()``); its directory may already
            hold the training run's ``rejected/`` output.
        model: the trained Keras autoencoder.
        metadata: its metadata.

    Returns:
        The artifact as loaded back from disk.
    """
    check_version_name(version)
    gfile = _gfile()
    path = join(model_dir, version)
    gfile.makedirs(path)
    _save_keras(model, join(path, MODEL_FILE))
    _replace_text(join(path, METADATA_FILE), metadata.to_json())
    try:
        artifact = load_artifact(model_dir, version=version)
    except Exception:
        for name in (METADATA_FILE, MODEL_FILE):
            if gfile.exists(join(path, name)):
                gfile.remove(join(path, name))
        raise
    _replace_text(join(model_dir, LATEST_FILE), version + "\n")
    return artifact


def _replace_text(path: str, text: str) -> None:
    """Writes a file whole: to a temporary name, then renamed over ``path``
    (atomic on local and POSIX-like filesystems; on object stores a single
    object write is atomic by itself)."""
    directory, name = path.rsplit("/", 1) if "/" in path else (".", path)
    tmp = join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
    _write_text(tmp, text)
    _gfile().rename(tmp, path, overwrite=True)


# A version name: letters, digits, '.', '_' and '-', not starting with '.'
# (what new_version() makes, and what a user may pass as --model_version).
_VERSION_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


def check_version_name(version: str, *, where: str = "--model_version") -> None:
    """Refuses a version name that is not a plain directory name (``../x``,
    ``a/b``, an empty or hidden name), so a version can never point outside
    its model directory.

    Raises:
        ArtifactError: naming the value and what a version name may hold.

    Example:
        >>> check_version_name("../../etc")
        Traceback (most recent call last):
        ...
        autoenc.errors.ArtifactError: --model_version '../../etc' is not a model version name: a version name is letters, digits, '.', '_' and '-' (not starting with '.'), like 20261126T171500Z-3f9a1c.
    """
    if not isinstance(version, str) or not _VERSION_NAME.fullmatch(version):
        raise ArtifactError(
            f"{where} {version!r} is not a model version name: a version name is letters, digits, "
            "'.', '_' and '-' (not starting with '.'), like 20261126T171500Z-3f9a1c."
        )


def list_versions(model_dir: str) -> list[str]:
    """The version directories of ``model_dir`` that hold a ``metadata.json``, sorted."""
    gfile = _gfile()
    names = (v.rstrip("/") for v in gfile.listdir(model_dir))
    return sorted(v for v in names if gfile.exists(join(model_dir, v, METADATA_FILE)))


def resolve_version(model_dir: str, version: str | None = None) -> str:
    """The version to load: ``version`` if given, else the one ``LATEST`` names.

    Raises:
        ArtifactError: the directory, ``LATEST`` or the version does not exist.
    """
    gfile = _gfile()
    if not gfile.isdir(model_dir):
        raise ArtifactError(
            f"Model directory {model_dir} does not exist. Pass the --model_dir that 'autoenc train' wrote to."
        )
    if version is None:
        latest = join(model_dir, LATEST_FILE)
        if not gfile.exists(latest):
            versions = list_versions(model_dir)
            hint = (
                f" It holds version(s) {', '.join(versions)}; choose one with --model_version."
                if versions
                else " It holds no model version: run 'autoenc train' with this --model_dir first."
            )
            raise ArtifactError(
                f"{model_dir} is not an autoenc model directory: it has no {LATEST_FILE} file.{hint}"
            )
        with gfile.GFile(latest) as f:
            version = f.read().strip()
        if not version:
            raise ArtifactError(
                f"{latest} is empty; it should name a model version. Retrain, or pass --model_version."
            )
        check_version_name(version, where=f"{latest} names")
    else:
        check_version_name(version)
    if not gfile.isdir(join(model_dir, version)):
        raise ArtifactError(
            f"Model version {version} does not exist in {model_dir}. Versions there: "
            f"{', '.join(list_versions(model_dir)) or '(none)'}."
        )
    return version


def load_artifact(model_dir: str, *, version: str | None = None) -> ModelArtifact:
    """Loads and validates a model version (default: the one ``LATEST`` names).

    Args:
        model_dir: the model directory.
        version: a version name; ``None`` reads ``LATEST``.

    Returns:
        The ``ModelArtifact``.

    Raises:
        ArtifactError: a file is missing or damaged, a field is wrong, or the
            model does not match its metadata; the message names the file and field.
    """
    gfile = _gfile()
    version = resolve_version(model_dir, version)
    path = join(model_dir, version)
    meta_path = join(path, METADATA_FILE)
    model_path = join(path, MODEL_FILE)
    for required in (meta_path, model_path):
        if not gfile.exists(required):
            raise ArtifactError(
                f"{required} is missing: model version {version} is incomplete (its "
                "training run did not finish). Use another --model_version, or retrain."
            )
    with gfile.GFile(meta_path) as f:
        metadata = ArtifactMetadata.from_json(f.read(), path=meta_path)
    try:
        model = _load_keras(model_path)
    except Exception as e:  # Keras raises many types for a damaged file.
        raise ArtifactError(f"{model_path} could not be loaded as a Keras model: {e}") from e
    _check_model(model, metadata, model_path)
    return ModelArtifact(path=path, version=version, metadata=metadata, model=model)


def _save_keras(model, model_path: str) -> None:
    if "://" not in model_path:
        model.save(model_path)
        return
    # Keras writes .keras files to local paths; copy to remote ones after.
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, MODEL_FILE)
        model.save(local)
        _gfile().copy(local, model_path, overwrite=True)


def _load_keras(model_path: str):
    import keras

    import autoenc.models  # noqa: F401  (registers autoenc's custom layers for safe-mode loading)

    if "://" not in model_path:
        return keras.saving.load_model(model_path, compile=False, safe_mode=True)
    # Keras reads .keras files from local paths; copy remote ones first.
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, MODEL_FILE)
        _gfile().copy(model_path, local)
        return keras.saving.load_model(local, compile=False, safe_mode=True)


def _quantiles(check, d: dict) -> list[float]:
    """``validation_error_quantiles``: at least 2 finite, non-decreasing numbers
    >= 0, at evenly spaced levels from 0 to 1 (autoenc writes the 101
    percentiles; anomaly_score, drift and score-time thresholds interpolate in them)."""
    value = check.get(d, "validation_error_quantiles", list)
    ok = len(value) >= 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if ok:
        q = np.asarray(value, dtype=np.float64)
        ok = bool(np.isfinite(q).all() and (q >= 0).all() and (np.diff(q) >= 0).all())
    if not ok:
        check.fail(
            "validation_error_quantiles", "at least 2 finite, non-decreasing numbers >= 0 (quantiles)", value
        )
    return [float(v) for v in value]


def _latent_distribution(check, d: dict, latent_dim: int):
    """The optional ``latent_distribution`` field, checked; ``None`` when absent."""
    from autoenc.scoring import LatentDistribution

    if "latent_distribution" not in d:
        return None
    field = check.get(d, "latent_distribution", dict)
    rows = check.get(field, "rows", int, where="latent_distribution.")
    arrays = {}
    for name, shape in (("mean", (latent_dim,)), ("precision", (latent_dim, latent_dim))):
        value = check.get(field, name, list, where="latent_distribution.")
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            array = None
        if array is None or array.shape != shape or not np.isfinite(array).all():
            wanted = " x ".join(str(n) for n in shape) + " finite numbers"
            check.fail(f"latent_distribution.{name}", wanted, value)
        arrays[name] = array
    quantiles = None
    if "distance_quantiles" in field:
        value = check.get(field, "distance_quantiles", list, where="latent_distribution.")
        try:
            quantiles = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            quantiles = None
        if (
            quantiles is None
            or quantiles.ndim != 1
            or len(quantiles) < 2
            or not np.isfinite(quantiles).all()
            or (np.diff(quantiles) < 0).any()
        ):
            check.fail("latent_distribution.distance_quantiles", "non-decreasing finite numbers", value)
    error_mean = None
    if "error_mean" in field:
        error_mean = check.get(field, "error_mean", (int, float), where="latent_distribution.")
        if not (math.isfinite(error_mean) and error_mean >= 0):
            check.fail("latent_distribution.error_mean", "a finite number >= 0", error_mean)
        error_mean = float(error_mean)
    return LatentDistribution(
        mean=arrays["mean"],
        precision=arrays["precision"],
        rows=rows,
        distance_quantiles=quantiles,
        error_mean=error_mean,
    )


def _model_kind(check, model: dict) -> str:
    from autoenc.training import MODEL_KINDS

    kind = check.get(model, "kind", str, where="model.")
    if kind not in MODEL_KINDS:
        check.fail("model.kind", f"one of {', '.join(MODEL_KINDS)}", kind)
    return kind


def _inputs_text(spec: FeatureSpec) -> str:
    text = f"{spec.width} feature value{'s' if spec.width != 1 else ''}"
    if spec.n_indicators:
        text += f" and {spec.n_indicators} missing indicator{'s' if spec.n_indicators != 1 else ''}"
    return text


def _check_model(model, metadata: ArtifactMetadata, model_path: str) -> None:
    from autoenc.models import LATENT_LAYER

    n = metadata.spec.model_width
    in_shape = tuple(model.inputs[0].shape)
    out_shape = tuple(model.outputs[0].shape)
    if in_shape[1:] != (n,) or out_shape[1:] != (n,):
        raise ArtifactError(
            f"{model_path} maps shape {in_shape[1:]} to {out_shape[1:]}, but metadata.json "
            f"lists {_inputs_text(metadata.spec)}; the two files are from different models. Retrain."
        )
    try:
        latent = model.get_layer(LATENT_LAYER)
    except ValueError as e:
        raise ArtifactError(
            f"{model_path} has no layer named '{LATENT_LAYER}'; it was not written by autoenc."
        ) from e
    if tuple(latent.output.shape)[1:] != (metadata.latent_dim,):
        raise ArtifactError(
            f"{model_path}: latent layer has shape {tuple(latent.output.shape)[1:]}, but "
            f"metadata.json says latent_dim={metadata.latent_dim}. Retrain."
        )
