"""A model version as a servable TensorFlow SavedModel (``autoenc export``).

The SavedModel scores **raw** rows on its own: the normalization, the model,
the reconstruction error, the threshold and the validation-error quantiles are
all inside the graph, so TensorFlow Serving, Vertex AI, Beam's
``TFModelHandlerTensor`` or a plain ``tf.saved_model.load`` give the numbers
``autoenc score`` gives, without autoenc or Keras installed. Only variables and
traced ``tf.function`` graphs are saved (never the Keras model), so no custom
layer is needed to load it.

Layout: ``OUTPUT/<n>/``, ``n`` the next integer after the largest numeric
folder already in ``OUTPUT`` (1 for the first), which is the layout TF Serving
and Vertex AI load (the highest number is served)::

    OUTPUT/<n>/
      saved_model.pb, fingerprint.pb, variables/
      assets/autoenc_export.json   the autoenc model version it came from, the
                                   features and the signatures' inputs and outputs

Signatures (both return the same outputs):

* ``serving_default``: one input per feature column, named after it (a
  character other than a letter, a digit, ``_``, ``.`` or ``-`` becomes ``_``),
  float64, ``[None]`` for a scalar feature and ``[None, *shape]`` for an image
  or sequence feature; a categorical feature is a string ``[None]``, its value
  as text (booleans ``"true"``/``"false"``, integers in decimal), and a value
  outside its categories takes the out-of-vocabulary slot (a null category
  is reachable through ``score_rows`` only).
* ``score_rows``: one input ``rows``, float64 ``[None, width]``: the features
  in model order, tensor features flattened row-major, categorical features
  one-hot (the layout ``autoenc.scoring.Scorer.score`` takes). The loaded object's ``__call__`` is
  the same function, which is what Beam's default tensor inference calls.

Outputs: ``latent`` float32 ``[None, latent_dim]``; ``reconstruction_error``
float64 ``[None]`` (mean squared error in normalized units, with a
cross-entropy per categorical column; higher = more
anomalous); ``anomaly_score`` float64 ``[None]`` in [0, 1]; ``is_anomaly`` bool
``[None]``; ``latent_distance`` float64 ``[None]`` (higher = farther from the
validation rows' latents) when the model has a latent distribution, and
``combined_score`` float64 ``[None]`` in [0, 1] (the larger of the anomaly
score and the latent distance's share of validation rows) when it has the
validation distances' percentiles, and ``total_distance`` float64 ``[None]``
(the latent distance and the error as one distance, see
``autoenc.scoring.LatentDistribution.total_distance``) when it keeps its
validation rows' mean error. A row
beyond float32's range after normalization (1e300, inf, NaN), or whose
computation overflows, is scored as ``autoenc score`` scores an extreme row:
error and distance +inf, anomaly score 1, anomaly True, latent NaN. A model
trained with ``--missing impute`` takes NaN as a missing value instead (as
``autoenc score`` takes a null or NaN): it takes the training median, and the
output ``imputed_values`` int32 ``[None]`` counts them per row.

Inputs are float64 because autoenc normalizes in float64: a raw value such as
123456.7 in float32 would already be off by 0.004, a large share of a small
standard deviation.

Example:
    >>> path = export_saved_model("models/demo", "serving/demo")   # doctest: +SKIP
    >>> import tensorflow as tf                                      # doctest: +SKIP
    >>> tf.saved_model.load(path).signatures["serving_default"]     # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile

import numpy as np

from autoenc import __version__
from autoenc import artifact as artifacts
from autoenc.errors import ConfigError

SIGNATURE = "serving_default"
ROWS_SIGNATURE = "score_rows"
ROWS_INPUT = "rows"
METADATA_ASSET = "autoenc_export.json"
OUTPUTS = ("latent", "latent_distance", "reconstruction_error", "anomaly_score", "is_anomaly")

# TensorFlow names a signature's inputs after graph placeholders, which allow
# only these characters.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def input_name(feature: str) -> str:
    """The ``serving_default`` input name of a feature column.

    Example:
        >>> input_name("x1"), input_name("pixel values"), input_name("_id")
        ('x1', 'pixel_values', 'f_id')
    """
    name = _UNSAFE.sub("_", feature)
    # A placeholder name must start with a letter, a digit or '.'.
    return name if re.match(r"[A-Za-z0-9.]", name) else "f" + name


def next_version_number(output: str) -> int:
    """1 + the largest numeric folder name in ``output`` (1 when none, or
    when ``output`` does not exist yet).

    Example:
        >>> next_version_number("/nonexistent/serving")
        1
    """
    gfile = _gfile()
    if not gfile.isdir(output):
        return 1
    numbers = [int(n.rstrip("/")) for n in gfile.listdir(output) if n.rstrip("/").isdigit()]
    return max(numbers, default=0) + 1


def export_saved_model(model_dir: str, output: str, *, version: str | None = None) -> str:
    """Writes a model version as a SavedModel under ``output/<n>/``.

    The SavedModel is written under a hidden temporary name in ``output`` and
    renamed to its number only once complete (TF Serving ignores names that are
    not numbers), so ``output`` never holds a half-written version. On object
    stores (``gs://``), where folders cannot be renamed, it is written locally
    and copied with ``saved_model.pb`` last.

    Args:
        model_dir: the model directory ``autoenc train`` wrote.
        output: the folder of numbered SavedModels (created if needed; local
            or any filesystem ``tf.io.gfile`` knows).
        version: the model version to export; ``None``: the one ``LATEST`` names.

    Returns:
        The path of the new version folder, ``output/<n>``.

    Raises:
        ArtifactError: the model directory or version is missing or damaged.
        ConfigError: two feature names give the same input name.

    Example:
        >>> export_saved_model("models/demo", "serving/demo")   # doctest: +SKIP
        'serving/demo/1'
    """
    import tensorflow as tf

    artifact = artifacts.load_artifact(model_dir, version=version)
    module = serving_module(artifact)
    gfile = _gfile()
    gfile.makedirs(output)
    with tempfile.TemporaryDirectory() as tmp:
        asset = os.path.join(tmp, METADATA_ASSET)
        with open(asset, "w") as f:
            f.write(json.dumps(_export_metadata(artifact, model_dir), indent=2))
        module.autoenc_metadata = tf.saved_model.Asset(asset)
        signatures = {SIGNATURE: module.serve, ROWS_SIGNATURE: module.score_rows}
        if "://" in output:
            local = os.path.join(tmp, "saved_model")
            tf.saved_model.save(module, local, signatures=signatures)
            return _copy_numbered(local, output)
        staging = artifacts.join(output, f".export-{secrets.token_hex(4)}.tmp")
        try:
            tf.saved_model.save(module, staging, signatures=signatures)
            return _rename_numbered(staging, output)
        finally:
            if gfile.exists(staging):
                gfile.rmtree(staging)


def serving_module(artifact):
    """A ``tf.Module`` whose ``serve`` and ``score_rows`` functions score raw
    rows as ``artifact.scorer()`` does (its own threshold), ready for
    ``tf.saved_model.save``.

    Raises:
        ConfigError: two feature names give the same input name.
    """
    import tensorflow as tf

    from autoenc.models import categorical_blocks, scoring_model
    from autoenc.scoring import row_errors

    meta = artifact.metadata
    features = meta.spec.features
    names = [input_name(f.name) for f in features]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ConfigError(
            f"Features {[f.name for f in features if input_name(f.name) in clashes]} all become "
            f"the SavedModel input {clashes[0]!r} (inputs allow only letters, digits, '_', '.' "
            "and '-'). Rename the columns and retrain to export this model."
        )
    width = meta.spec.width
    model = scoring_model(artifact.model)
    mean = tf.constant(meta.normalization.mean, tf.float64)
    scale = tf.constant(meta.normalization.scale, tf.float64)
    threshold = tf.constant(meta.threshold, tf.float64)
    interpolate = _quantile_interpolation(meta.validation_error_quantiles)
    distribution = meta.latent_distribution
    imputation = meta.spec.imputation
    if imputation is not None:
        # As Imputation.apply: a NaN in a numeric column takes its median.
        fill = np.zeros(width)
        fill[list(imputation.positions)] = imputation.median
        numeric = np.zeros(width, dtype=bool)
        numeric[list(imputation.positions)] = True
        fill, numeric = tf.constant(fill, tf.float64), tf.constant(numeric)
        indicators = tf.constant([imputation.positions[j] for j in imputation.indicators], tf.int32)
    errors = row_errors(width, categorical_blocks(artifact.model), list(meta.spec.model_sizes))
    tables = {}
    for feature in meta.spec.categorical_features:
        known = [(c, i) for i, c in enumerate(feature.categories) if c is not None]
        tables[feature.name] = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant([c for c, _ in known], tf.string), tf.constant([i for _, i in known], tf.int64)
            ),
            default_value=len(feature.categories),
        )
    distance_score = None
    if distribution is not None and distribution.distance_quantiles is not None:
        distance_score = _quantile_interpolation(distribution.distance_quantiles)
    total_weight = None  # the error's weight in total_distance
    if meta.total_distance:
        total_weight = tf.constant(distribution.error_weight(meta.spec.model_width), tf.float64)
    if distribution is not None:
        latent_mean = tf.constant(distribution.mean, tf.float64)
        precision = tf.constant(distribution.precision, tf.float64)

    def score_rows(rows):
        out = {}
        if imputation is not None:
            # As Imputation.apply: a NaN is missing; it takes the median, and
            # the missing indicators follow the features.
            missing = tf.math.is_nan(rows) & numeric[None, :]
            out["imputed_values"] = tf.reduce_sum(tf.cast(missing, tf.int32), axis=1)
            rows = tf.concat(
                [
                    tf.where(missing, fill[None, :], rows),
                    tf.cast(tf.gather(missing, indicators, axis=1), tf.float64),
                ],
                axis=1,
            )
        # Normalization as Normalizer.transform: float64, then rounded to float32
        # (a value beyond float32's range becomes +-inf: an extreme row).
        x = tf.cast((rows - mean) / scale, tf.float32)
        # Then as Scorer.score_normalized: extreme rows go through the model as
        # zeros and their scores are replaced after.
        finite_input = tf.reduce_all(tf.math.is_finite(x), axis=1)
        x = tf.where(finite_input[:, None], x, tf.zeros_like(x))
        latent, reconstruction = model(x, training=False)
        error, _ = errors(x, tf.reshape(reconstruction, tf.shape(x)))
        extreme = (
            ~finite_input | ~tf.math.is_finite(error) | ~tf.reduce_all(tf.math.is_finite(latent), axis=1)
        )
        if distribution is not None:
            d = tf.cast(latent, tf.float64) - latent_mean
            distance = tf.sqrt(tf.maximum(tf.reduce_sum(tf.matmul(d, precision) * d, axis=1), 0.0))
            extreme |= ~tf.math.is_finite(distance)
            out["latent_distance"] = tf.where(extreme, tf.constant(np.inf, tf.float64), distance)
        error = tf.where(extreme, tf.constant(np.inf, tf.float64), error)
        out["latent"] = tf.where(extreme[:, None], tf.constant(np.nan, tf.float32), latent)
        out["reconstruction_error"] = error
        out["anomaly_score"] = interpolate(error)
        if distance_score is not None:
            out["combined_score"] = tf.maximum(out["anomaly_score"], distance_score(out["latent_distance"]))
        if total_weight is not None:
            # As LatentDistribution.total_distance (+inf for an extreme row).
            squared = tf.square(out["latent_distance"]) + total_weight * tf.cast(error, tf.float64)
            infinite = tf.constant(np.inf, tf.float64)
            out["total_distance"] = tf.sqrt(tf.where(tf.math.is_nan(squared), infinite, squared))
        out["is_anomaly"] = (error > threshold) | extreme
        return out

    def column(f, value):
        if f.categorical:
            return tf.one_hot(tables[f.name].lookup(tf.reshape(value, [-1])), f.size, dtype=tf.float64)
        return tf.reshape(value, [-1, f.size])

    def serve(inputs):
        return score_rows(tf.concat([column(f, inputs[f.name]) for f in features], axis=1))

    module = tf.Module()
    # Tracked so the SavedModel holds them; the functions read them.
    module.model_variables = list(model.variables)
    module.category_tables = list(tables.values())
    module.autoenc_model_version = tf.Variable(
        artifact.version, trainable=False, name="autoenc_model_version"
    )
    module.score_rows = tf.function(
        score_rows, input_signature=[tf.TensorSpec([None, width], tf.float64, name=ROWS_INPUT)]
    )
    module.__call__ = module.score_rows
    module.serve = tf.function(
        serve,
        input_signature=[
            {
                f.name: tf.TensorSpec([None], tf.string, name=name)
                if f.categorical
                else tf.TensorSpec([None, *f.shape], tf.float64, name=name)
                for f, name in zip(features, names, strict=True)
            }
        ],
    )
    return module


def _quantile_interpolation(quantiles):
    """``autoenc.scoring.anomaly_score`` as TensorFlow ops: ``np.interp`` of
    the errors in the unique quantiles (0 below, 1 above), with numpy's
    arithmetic, so the results agree to the last bits."""
    import tensorflow as tf

    q = np.asarray(quantiles, dtype=np.float64)
    levels = np.linspace(0.0, 1.0, len(q))
    xp, first = np.unique(q, return_index=True)
    fp = levels[first]
    xp_t, fp_t = tf.constant(xp), tf.constant(fp)
    slopes = tf.constant((fp[1:] - fp[:-1]) / (xp[1:] - xp[:-1]) if len(xp) > 1 else np.zeros(1))
    last = len(xp) - 1

    def interpolate(errors):
        if last:
            j = tf.clip_by_value(tf.searchsorted(xp_t, errors, side="right") - 1, 0, last - 1)
            inside = tf.gather(slopes, j) * (errors - tf.gather(xp_t, j)) + tf.gather(fp_t, j)
        else:
            inside = tf.fill(tf.shape(errors), fp_t[0])
        inside = tf.where(errors == xp_t[last], fp_t[last], inside)
        inside = tf.where(errors < xp_t[0], tf.constant(0.0, tf.float64), inside)
        return tf.where(errors > xp_t[last], tf.constant(1.0, tf.float64), inside)

    return interpolate


def _export_metadata(artifact, model_dir: str) -> dict:
    """The content of ``assets/autoenc_export.json``."""
    meta = artifact.metadata
    outputs = [n for n in OUTPUTS if n != "latent_distance" or meta.latent_distribution is not None]
    if meta.combined_score:
        outputs.append("combined_score")
    if meta.total_distance:
        outputs.append("total_distance")
    if meta.spec.imputation is not None:
        outputs.append("imputed_values")
    return {
        "autoenc_version": __version__,
        "exported_at": artifacts.utc_now(),
        "model_dir": model_dir,
        "model_version": artifact.version,
        "model_kind": meta.model_kind,
        "latent_dim": meta.latent_dim,
        "missing": meta.spec.to_dict()["missing"],
        "threshold": {"value": meta.threshold, **meta.threshold_method},
        "signatures": {
            SIGNATURE: {
                "inputs": [
                    {
                        "feature": f.name,
                        "input": input_name(f.name),
                        "shape": [None, *f.shape],
                        **(
                            {"dtype": "string", "categories": list(f.categories)}
                            if f.categorical
                            else {"dtype": "float64"}
                        ),
                    }
                    for f in meta.spec.features
                ],
                "outputs": outputs,
            },
            ROWS_SIGNATURE: {
                "inputs": [{"input": ROWS_INPUT, "shape": [None, meta.spec.width]}],
                "outputs": outputs,
            },
        },
    }


def _rename_numbered(staging: str, output: str) -> str:
    """Renames the complete SavedModel ``staging`` to the next free number in
    ``output``; if another export takes that number first, the next one."""
    import tensorflow as tf

    gfile = _gfile()
    for _ in range(100):
        final = artifacts.join(output, str(next_version_number(output)))
        if gfile.exists(final):
            continue
        try:
            gfile.rename(staging, final, overwrite=False)
        except tf.errors.OpError:
            if gfile.exists(final):
                continue  # taken in the meantime
            raise
        return final
    raise RuntimeError(f"Could not find a free version number in {output}.")


def _copy_numbered(local: str, output: str) -> str:
    """Copies the SavedModel folder ``local`` to the next number in ``output``,
    ``saved_model.pb`` last (a server that looks early finds no model yet)."""
    gfile = _gfile()
    final = artifacts.join(output, str(next_version_number(output)))
    files = [
        os.path.relpath(os.path.join(root, name), local)
        for root, _, names in os.walk(local)
        for name in names
    ]
    files.sort(key=lambda p: p == "saved_model.pb")
    for rel in files:
        target = artifacts.join(final, *rel.split(os.sep))
        gfile.makedirs(target.rsplit("/", 1)[0])
        gfile.copy(os.path.join(local, rel), target, overwrite=False)
    return final


def _gfile():
    import tensorflow as tf

    return tf.io.gfile
