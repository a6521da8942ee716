"""Train an autoencoder on Parquet or TFRecord data and write a new model version.

Input: a glob of Parquet files, or of TFRecord files of ``tf.train.Example``
(plain or GZIP). Output: ``MODEL_DIR/<version>/`` with ``model.keras``,
``metadata.json`` and ``rejected/`` (the rows that failed validation, with
reasons); then ``MODEL_DIR/LATEST`` names the new version.

Two stages:

1. A Beam pipeline (any runner) reads and validates every row, writes the
   rejected ones, splits the valid ones deterministically into training and
   validation rows, stages them as TFRecord chunks under the version directory
   and computes normalization statistics of the training rows with a CombineFn.
2. The launching process streams the staged rows through ``tf.data`` into a
   Keras fit with early stopping, sets the anomaly threshold from the validation
   errors, estimates the latent vectors' mean and covariance (for
   ``latent_distance``) on the validation rows and up to ``LATENT_TRAIN_ROWS``
   training rows, writes the artifact and removes the staged rows.

Example:
    autoenc train --input 'data/*.parquet' --model_dir models/demo \\
        --key_columns id --latent_dim 1
    python -m autoenc_beam.train --input 'data/*.tfrecord.gz' --model_dir models/demo
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import time

import apache_beam as beam
import numpy as np
import pyarrow as pa

from autoenc import artifact as artifacts
from autoenc.errors import ConfigError, InputError
from autoenc.preprocessing import ExtremeBounds, Imputation
from autoenc.schema import FeatureSpec, infer_spec
from autoenc.trainer import PARTS, ThresholdOptions, train_staged, write_training_report
from autoenc.training import (
    TENSOR_KINDS,
    TrainingConfig,
    build_model,
)
from autoenc.validation import key_mask, rejected_schema, validation_mask

from . import io, outputs, transforms
from .options import (
    DEFAULTS,
    InputOptions,
    TrainOptions,
    check_threshold_options,
    parse,
    runner_name,
)

_log = logging.getLogger(__name__)
STAGING = ".staging"
RUN_INFO = ".stage1.json"
REPORT_FILE = "report.html"
# Written into the version directory of a training run that failed (with why).
FAILED_FILE = "FAILED"


def position_names(pattern: str, paths) -> dict[str, str]:
    """Each input file's name for the position split: its path below the
    input glob's fixed directory (the glob up to its last ``/`` before the
    first wildcard), or, for paths that do not start with it, below the
    files' common directory. So the same files split the same way wherever
    they are stored (a local copy, a bucket, another machine's path).

    Example:
        >>> position_names("gs://b/data/*/*.parquet", ["gs://b/data/d=1/a.parquet"])
        {'gs://b/data/d=1/a.parquet': 'd=1/a.parquet'}
        >>> position_names("/tmp/x/a.parquet", ["/tmp/x/a.parquet"])
        {'/tmp/x/a.parquet': 'a.parquet'}
    """
    paths = list(paths)
    fixed = pattern[: min([pattern.find(c) for c in "*?[" if c in pattern] or [len(pattern)])]
    base = fixed[: fixed.rfind("/") + 1]
    if base and all(path.startswith(base) for path in paths):
        return {path: path[len(base) :] for path in paths}
    parts = [path.split("/") for path in paths]
    common = 0
    while all(len(p) > common + 1 and p[common] == parts[0][common] for p in parts):
        common += 1
    return {path: "/".join(p[common:]) for path, p in zip(paths, parts, strict=True)}


def split_mask(valid, selected, *, seed: int, fraction: float, by: str = "position", keys=(), names=None):
    """True for the rows of ``valid`` (those ``selected``, a bool mask) that
    ``validation_mask`` (``by="position"``: the file's name in ``names``, from
    ``position_names``, and the row number) or ``key_mask`` (``by="key"``: the
    values of the ``keys`` columns) sends to validation."""
    if by == "key":
        return key_mask(
            [valid.columns.column(name).filter(pa.array(selected)) for name in keys],
            seed=seed,
            fraction=fraction,
        )
    source = names.get(valid.source, valid.source) if names else valid.source
    return validation_mask(source, valid.rows[selected], seed=seed, fraction=fraction)


def split_rows(valid, *, seed: int, fraction: float, by: str = "position", keys=(), names=None):
    """The training split of ``ValidRows``: (rows labeled anomalous, the other
    rows, bool per other row: True for validation, the others' selection mask
    over ``valid``). Rows labeled anomalous never train; the others are split
    by ``split_mask``."""
    features = valid.features
    others = np.ones(len(features), bool) if valid.labels is None else ~valid.labels
    anomalous = features[~others]
    to_validation = split_mask(valid, others, seed=seed, fraction=fraction, by=by, keys=keys, names=names)
    return anomalous, features[others], to_validation, others


def _split(valid, *, seed: int, fraction: float, by: str, keys, names):
    """ValidRows -> ('train' | 'validation' | 'anomalies', (chunk key, rows)) by ``split_rows``."""
    anomalous, features, to_validation, _ = split_rows(
        valid, seed=seed, fraction=fraction, by=by, keys=keys, names=names
    )
    if len(anomalous):
        yield beam.pvalue.TaggedOutput("anomalies", (valid.key, anomalous))
    if to_validation.any():
        yield beam.pvalue.TaggedOutput("validation", (valid.key, features[to_validation]))
    if not to_validation.all():
        yield valid.key, features[~to_validation]


def staged_files(version_dir: str) -> dict[str, list[tuple[str, int]]]:
    """Per part, the staged files (path, bytes) in name order: the canonical order."""
    files = io.list_files(artifacts.join(version_dir, STAGING), ".tfrecord")
    return {part: [f for f in files if f[0].rsplit("/", 1)[-1].startswith(part + "-")] for part in PARTS}


def read_headers(files: list[tuple[str, int]], width: int) -> list:
    """The headers of staged files, each file's size checked against them.

    Raises:
        InputError: a staged file is damaged or incomplete.
    """
    import concurrent.futures

    from autoenc.training import read_staged_header, staged_size

    def one(item):
        path, size = item
        with io.open_file(path) as f:
            header = read_staged_header(f, source=path)
        if header.width != width or size != staged_size(header.rows, header.width):
            raise InputError(
                f"Staged file {path} is incomplete: {size} bytes for {header.rows} rows of "
                f"{header.width} values (expected {staged_size(header.rows, width)}). Run again."
            )
        return header

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, files))


def cleanup_abandoned(model_dir: str) -> None:
    """Deletes what training runs that died left (no live process holds
    their lock): the staged rows, and in a version without ``metadata.json``
    its partial model and report; a complete version (killed after writing
    its artifact, before deleting its staged rows) keeps its artifact.
    ``rejected/`` rows stay. Local model directories only."""
    if not io.is_local(model_dir) or not os.path.isdir(model_dir):
        return
    # LATEST is rewritten by every run that finishes, without a lock: only a
    # temporary file no write could still be busy with is deleted.
    io.remove_temporaries(model_dir, older_than_s=600)
    for name in sorted(os.listdir(model_dir)):
        version_dir = os.path.join(model_dir, name)
        if name.startswith(".") or not os.path.isdir(version_dir):
            continue
        complete = os.path.exists(os.path.join(version_dir, artifacts.METADATA_FILE))
        leftovers = [
            n
            for n in ((STAGING,) if complete else (STAGING, artifacts.MODEL_FILE, REPORT_FILE))
            if os.path.lexists(os.path.join(version_dir, n))
        ]
        if (leftovers or io.temporaries(version_dir)) and outputs.is_free(version_dir):
            for n in leftovers:
                io.delete_tree(os.path.join(version_dir, n))
            leftovers += io.remove_temporaries(version_dir)
            print(
                f"autoenc train: removed what the interrupted training run {name} left "
                f"({', '.join(leftovers)}).",
                file=sys.stderr,
            )


def _fail_version(version_dir: str, error: BaseException) -> None:
    """After a failed training run: delete everything of its version but
    ``rejected/`` (why rows were refused is what one needs to fix the input)
    and say why in ``FAILED``. ``list_versions`` never lists it (no
    ``metadata.json``)."""
    for name in (STAGING, artifacts.METADATA_FILE, artifacts.MODEL_FILE, REPORT_FILE, RUN_INFO):
        try:
            io.delete_tree(artifacts.join(version_dir, name))
        except Exception:  # cleanup must not hide the error
            _log.warning("Could not delete %s", artifacts.join(version_dir, name), exc_info=True)
    try:
        io.write_bytes(
            artifacts.join(version_dir, FAILED_FILE),
            f"{artifacts.utc_now()} training failed: {type(error).__name__}: {error}\n".encode(),
        )
    except Exception:
        _log.warning("Could not write %s", artifacts.join(version_dir, FAILED_FILE), exc_info=True)


def sample_features(sample: pa.Table, schema: pa.Schema, spec, missing: str) -> np.ndarray:
    """The launch-time sample's valid rows as raw features [n, width] (NaN
    where a value is missing, with ``missing="impute"``)."""
    from autoenc.validation import conform_batch, validate_batch

    if not sample.num_rows:
        return np.zeros((0, spec.width))
    batch = sample.select(schema.names).combine_chunks().to_batches()[0]
    conformed = conform_batch(batch, schema, spec, source="the launch sample")
    return validate_batch(
        conformed.batch,
        dataclasses.replace(spec, imputation=None),
        prior_reasons=conformed.reasons,
        missing=missing,
    ).features


def extreme_bounds(features: np.ndarray, spec, spreads: float):
    """``ExtremeBounds`` of the features from the launch-time sample's valid rows."""
    return ExtremeBounds.from_sample(
        features, spec.names, sizes=[f.size for f in spec.features], spreads=spreads
    )


def imputation(features: np.ndarray, spec, plan) -> Imputation:
    """``--missing impute``: the medians and indicator features, from the
    launch-time sample's raw features.

    Raises:
        ConfigError: a tensor feature, or a feature with no value in the sample.
    """
    try:
        return Imputation.from_sample(
            features,
            spec.names,
            sizes=[f.size for f in spec.features],
            categorical=[f.name for f in spec.categorical_features],
        )
    except ValueError as e:
        raise ConfigError(
            f"--missing=impute: {e} (the launch sample of {plan.files[0].path} and the other input "
            "files). Leave such a column out of --features, or use --missing=reject."
        ) from e


@dataclasses.dataclass(frozen=True)
class TrainJob:
    """A training run, resolved at launch from the options.

    Attributes:
        config: the model's hyperparameters.
        pattern: the input glob, as given.
        plan: the input files (``io.plan_input``).
        spec: the features, key and label columns.
        schema: the schema the input is read with (the needed columns only).
        bounds: the extreme-value bounds rows are validated against.
        model_dir: where the new version is written.
        split_by: ``position`` or ``key`` (how rows go to validation).
        threshold: how the anomaly threshold is set.
        sample: the rows sampled at launch (bounds, imputation).
        spreads: ``--extreme_value_spreads``.
        max_categories: ``--max_categories``.
        vocabularies: per categorical column, what the vocabulary pass
            counted (``transforms.LearnVocabularies``).
    """

    config: TrainingConfig
    pattern: str
    plan: io.InputPlan
    spec: FeatureSpec
    schema: pa.Schema
    bounds: ExtremeBounds | None
    model_dir: str
    split_by: str
    threshold: ThresholdOptions
    sample: pa.Table | None = None
    spreads: float = 0.0
    max_categories: int = 0
    vocabularies: dict | None = None

    @property
    def label_column(self) -> str | None:
        return self.threshold.label_column

    @property
    def shape(self) -> tuple[int, ...] | None:
        """The one feature's shape for the image and sequence kinds, else None."""
        return self.spec.features[0].shape if self.config.model in TENSOR_KINDS else None

    def input_info(self, reconciliation: dict) -> dict:
        """``metadata.json``'s ``input``: where the rows came from and how they were split."""
        return {
            "pattern": self.pattern,
            "format": self.plan.fmt,
            "files": len(self.plan.files),
            "label_column": self.label_column,
            "split_by": self.split_by,
            "reconciliation": reconciliation["checks"],
            "extreme_value_bounds": self.bounds.to_dict(),
            **({"categorical": self.vocabularies} if self.vocabularies else {}),
            "determinism": {
                "seed": self.config.seed,
                "split_by": self.split_by,
                "validation_fraction": self.config.validation_fraction,
                "input_files": [{"path": f.path, "bytes": f.size, "rows": f.rows} for f in self.plan.files],
            },
        }


@dataclasses.dataclass(frozen=True)
class Staged:
    """What the Beam pass left in a version directory, checked."""

    counts: dict[str, int]
    files: dict[str, list[str]]
    headers: dict[str, list]
    reconciliation: dict


def check_options(options) -> TrainingConfig:
    """Checks the options that need no file; returns the training configuration.

    Raises:
        ConfigError: a bad option.
    """
    opt = options.view_as(TrainOptions)
    config = TrainingConfig.from_attributes(
        opt, contamination=DEFAULTS.contamination if opt.contamination is None else opt.contamination
    )
    check_threshold_options(opt)
    if not opt.extreme_value_spreads > 0:
        raise ConfigError(
            f"--extreme_value_spreads must be > 0 (inf: no bound). Received: {opt.extreme_value_spreads}"
        )
    return config


def plan_job(options, config: TrainingConfig) -> TrainJob:
    """Reads the input's schema and first rows, chooses the features and checks
    that the model kind can take them, before anything runs.

    Raises:
        InputError: unreadable input. ConfigError: options the data cannot take.
    """
    inp = options.view_as(InputOptions)
    opt = options.view_as(TrainOptions)
    plan = io.plan_input(inp.input, inp.format)
    sample = io.sample_rows(plan, plan.schema.names)
    spec = infer_spec(
        plan.schema,
        features=opt.features,
        categorical_columns=opt.categorical_columns,
        key_columns=opt.key_columns,
        label_column=opt.label_column,
        shapes=opt.shape or (),
        first_rows=sample,
        source=plan.files[0].path,
    )
    if config.model in TENSOR_KINDS and (spec.n_features != 1 or not spec.features[0].shape):
        what = "an image (H,W or H,W,C)" if config.model == "conv" else "a sequence (T,F or T)"
        raise ConfigError(
            f"--model={config.model} needs exactly one feature, {what} stored as lists. "
            f"Received: {', '.join(f.describe() for f in spec.features)}; choose it with --features."
        )
    if opt.split_by == "key" and not spec.key_columns:
        raise ConfigError(
            "--split_by=key splits rows by the values of their key columns, and there are none. "
            "Name them with --key_columns, or use --split_by=position."
        )
    if spec.categorical_features and config.model in TENSOR_KINDS:
        raise ConfigError(f"--model={config.model} takes one tensor feature, no categorical column.")
    if opt.max_categories < 1:
        raise ConfigError(f"--max_categories must be >= 1. Received: {opt.max_categories}")
    columns = set(spec.names) | set(spec.key_columns) | ({opt.label_column} if opt.label_column else set())
    schema = io.model_schema(plan.project(columns), spec, plan.fmt)
    job = TrainJob(
        config=config,
        pattern=inp.input,
        plan=plan,
        spec=spec,
        schema=schema,
        bounds=None,
        model_dir=inp.model_dir,
        split_by=opt.split_by,
        threshold=ThresholdOptions(opt.threshold, opt.contamination, opt.target_fpr, opt.label_column),
        sample=sample,
        spreads=opt.extreme_value_spreads,
        max_categories=opt.max_categories,
    )
    if spec.pending_vocabularies:
        # Checked again with the vocabularies' widths once they are learned.
        build_model(config, spec.model_width + len(spec.categorical_features), job.shape)
        return job
    return complete_job(job)


def complete_job(job: TrainJob) -> TrainJob:
    """With every vocabulary known: the imputation (``--missing impute``) and
    the extreme-value bounds from the launch sample, and the model built once,
    so that a combination the kind cannot take stops before the pass over the
    data."""
    spec = job.spec
    sampled = sample_features(job.sample, job.schema, spec, job.config.missing)
    if job.config.missing == "impute":
        spec = dataclasses.replace(spec, imputation=imputation(sampled, spec, job.plan))
    job = dataclasses.replace(job, spec=spec, bounds=extreme_bounds(sampled, spec, job.spreads), sample=None)
    blocks = spec.categorical_slots if job.config.model != "pca" else ()
    build_model(job.config, spec.model_width, job.shape, categorical_blocks=blocks)
    return job


def learn_vocabularies(job: TrainJob, options, version_dir: str) -> TrainJob:
    """Learns the categorical columns' vocabularies in a Beam pass over the
    input (``transforms.LearnVocabularies``), then completes the job
    (``complete_job``). Nothing to do without categorical columns.

    Raises:
        InputError: a categorical column with no value in the input.
    """
    names = job.spec.pending_vocabularies
    if not names:
        return job
    inp = options.view_as(InputOptions)
    path = artifacts.join(version_dir, STAGING, "vocabulary.json")
    started = time.time()
    with beam.Pipeline(options=options) as p:
        (
            p
            | "ReadRecords"
            >> io.ReadRecords(
                job.plan,
                schema=job.schema,
                spec=job.spec,
                batch_rows=inp.read_batch_rows,
                batch_bytes=inp.read_batch_bytes,
            )
            | "LearnVocabularies"
            >> transforms.LearnVocabularies(
                names, path, max_categories=job.max_categories, nulls=job.config.missing == "impute"
            )
        )
    counted = json.loads(io.read_bytes(path).decode())
    empty = [name for name in names if not counted.get(name, {}).get("categories")]
    if empty:
        raise InputError(
            f"Categorical column(s) {', '.join(map(repr, empty))} have no value in the input "
            f"{job.pattern} (every value null"
            + (", and --missing=reject" if job.config.missing == "reject" else "")
            + "). Leave them out of --features."
        )
    vocabularies = {name: counted[name]["categories"] for name in names}
    print(
        f"autoenc train: learned the categories of {len(names)} column(s) in {time.time() - started:.1f} s: "
        + "; ".join(
            f"'{name}' {len(vocabularies[name])} of {counted[name]['distinct']} values" for name in names
        ),
        file=sys.stderr,
    )
    info = {
        name: {
            "distinct": counted[name]["distinct"],
            "rows": counted[name]["rows"],
            "kept": len(vocabularies[name]),
            "rows_kept": int(sum(counted[name]["counts"])),
        }
        for name in names
    }
    job = dataclasses.replace(job, spec=job.spec.with_vocabularies(vocabularies), vocabularies=info)
    return complete_job(job)


def announce(job: TrainJob, options) -> None:
    """Says what is about to run, and which columns were left out of the features."""
    spec = job.spec
    _log.info("Training on %d file(s), features %s", len(job.plan.files), ", ".join(spec.names))
    print(
        f"autoenc train: {len(job.plan.files)} file(s), {spec.n_features} feature(s): "
        f"{', '.join(f.describe() for f in spec.features)}; on {runner_name(options)}",
        file=sys.stderr,
    )
    if spec.excluded:
        print(
            "autoenc train: left out of the default features: "
            + "; ".join(f"'{name}' ({why})" for name, why in spec.excluded)
            + ". Name them in --features to use them.",
            file=sys.stderr,
        )


@contextlib.contextmanager
def new_version(model_dir: str):
    """Creates and locks a new version directory; yields (version, its path).

    If the body fails, the version keeps only ``rejected/`` and a ``FAILED``
    file saying why (``_fail_version``), and the error goes on.
    """
    version = artifacts.new_version()
    version_dir = artifacts.join(model_dir, version)
    lock = outputs.OutputLock(version_dir, version, what="model version").acquire()
    try:
        yield version, version_dir
    except BaseException as e:
        _fail_version(version_dir, e)
        raise
    finally:
        lock.release()


def build_pipeline(p: beam.Pipeline, job: TrainJob, version_dir: str, *, batch_rows, batch_bytes):
    """The training job's Beam pass: read, validate, write the rejected rows,
    split, stage the rows for the fit and write the counts."""
    chunks = p | "ReadRecords" >> io.ReadRecords(
        job.plan, schema=job.schema, spec=job.spec, batch_rows=batch_rows, batch_bytes=batch_bytes
    )
    keys = job.spec.key_columns if job.split_by == "key" else ()
    checked = chunks | "Validate" >> transforms.Validate(
        job.spec, keep_columns=keys, label_column=job.label_column, bounds=job.bounds
    )
    checked[transforms.REJECTED] | "WriteRejected" >> io.WriteParquet(
        artifacts.join(version_dir, "rejected"), rejected_schema(job.schema)
    )
    split = checked.valid | "Split" >> beam.FlatMap(
        _split,
        seed=job.config.seed,
        fraction=job.config.validation_fraction,
        by=job.split_by,
        keys=keys,
        names=position_names(job.plan.pattern, [f.path for f in job.plan.files]),
    ).with_outputs("validation", "anomalies", main="train")
    staging = artifacts.join(version_dir, STAGING)
    counts = [split[name] | f"Stage{name.title()}" >> transforms.StageRows(staging, name) for name in PARTS]
    (
        [checked[transforms.COUNTS], *counts]
        | "AllCounts" >> beam.Flatten()
        | "WriteRunInfo" >> transforms.WriteRunInfo(artifacts.join(version_dir, RUN_INFO))
    )


def check_staged(job: TrainJob, version_dir: str) -> Staged:
    """Reads the pass's counts and the staged files' headers, and checks that
    every row read was staged or rejected, and that rows are left to train on.

    Raises:
        ReconciliationError: a row lost or duplicated. InputError: no rows to train on.
    """
    info = transforms.read_run_info(artifacts.join(version_dir, RUN_INFO))
    counts = {k: info["counts"].get(k, 0) for k in ("read", "rejected", *PARTS)}
    if job.spec.imputation is not None:
        counts.update({k: info["counts"].get(k, 0) for k in ("imputed_rows", "imputed_values")})
    io.ensure_schema_file(artifacts.join(version_dir, "rejected"), rejected_schema(job.schema))
    staged = staged_files(version_dir)
    headers = {part: read_headers(staged[part], job.spec.model_width) for part in PARTS}
    rejected_files = io.footer_rows(artifacts.join(version_dir, "rejected"))
    reconciliation = transforms.reconcile(
        declared=job.plan.expected_rows,
        counts=counts,
        outcomes=("train", "validation", "anomalies", "rejected"),
        written={
            "rejected": sum(rows for _, rows in rejected_files),
            **{part: sum(h.rows for h in headers[part]) for part in PARTS},
        },
    )
    if not reconciliation["reconciled"]:
        raise transforms.reconciliation_error(reconciliation, version_dir)
    print(
        f"autoenc train: read {counts['read']} rows: {counts['train']} for training, "
        f"{counts['validation']} for validation, "
        + (f"{counts['anomalies']} labeled anomalous, " if job.label_column else "")
        + f"{counts['rejected']} rejected (see {artifacts.join(version_dir, 'rejected')})"
        + (
            f"; {counts['imputed_rows']} rows had missing values imputed ({counts['imputed_values']} values)"
            if counts.get("imputed_rows")
            else ""
        ),
        file=sys.stderr,
    )
    if counts["train"] == 0 or counts["validation"] == 0:
        raise InputError(
            f"No rows left to train on: {counts['read']} read, {counts['rejected']} rejected, "
            f"{counts['train']} for training, {counts['validation']} for validation. See the "
            f"reasons in {artifacts.join(version_dir, 'rejected')}."
        )
    files = {part: [path for path, _ in staged[part]] for part in PARTS}
    return Staged(counts=counts, files=files, headers=headers, reconciliation=reconciliation)


def fit(job: TrainJob, staged: Staged):
    """Fits the model on the staged rows in this process; returns (model, metadata)."""
    return train_staged(
        job.config,
        job.spec,
        files=staged.files,
        headers=staged.headers,
        counts=staged.counts,
        threshold=job.threshold,
        input_info=job.input_info(staged.reconciliation),
        verbose="auto",
    )


def write_version(job: TrainJob, version: str, model, metadata, staged: Staged, started: float):
    """Writes the report and the artifact (``LATEST`` then names it) and
    removes the staged rows; returns the ``ModelArtifact``."""
    version_dir = artifacts.join(job.model_dir, version)
    write_training_report(
        artifacts.join(version_dir, REPORT_FILE),
        metadata,
        version,
        model,
        staged.files,
        wall_s=time.time() - started,
    )
    artifact = artifacts.write_artifact(job.model_dir, version, model, metadata)
    io.delete_tree(artifacts.join(version_dir, STAGING))
    return artifact


def run(argv=None, save_main_session=False):
    """Runs the training job. Returns the written ``ModelArtifact``.

    Args:
        argv: command-line arguments (without the program name).
        save_main_session: pickle the main session for remote workers.
    """
    options = parse(argv, save_main_session=save_main_session)
    inp = options.view_as(InputOptions)
    config = check_options(options)
    started = time.time()
    job = plan_job(options, config)
    announce(job, options)
    cleanup_abandoned(job.model_dir)
    with new_version(job.model_dir) as (version, version_dir):
        job = learn_vocabularies(job, options, version_dir)
        with beam.Pipeline(options=options) as p:
            build_pipeline(
                p, job, version_dir, batch_rows=inp.read_batch_rows, batch_bytes=inp.read_batch_bytes
            )
        staged = check_staged(job, version_dir)
        model, metadata = fit(job, staged)
        artifact = write_version(job, version, model, metadata, staged, started)
    report(artifact, started)
    return artifact


def report(artifact, started: float) -> None:
    """Prints the written version, its fit and where its report is."""
    metadata = artifact.metadata
    history = metadata.history
    print(
        f"autoenc train: wrote model version {artifact.version} to {artifact.path} in "
        f"{time.time() - started:.1f} s: best epoch {history['best_epoch']} of "
        f"{len(history['loss'])}, validation loss {min(history['val_loss']):.6g}, threshold "
        f"{metadata.threshold:.6g} ({metadata.threshold_method['method']}).\n"
        f"  report: {artifacts.join(artifact.path, REPORT_FILE)}",
        file=sys.stderr,
    )


def main(argv=None):
    from .cli import run_command

    return run_command(run, sys.argv[1:] if argv is None else argv, "train")


if __name__ == "__main__":
    sys.exit(main())
