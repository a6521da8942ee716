"""Evaluate a model on labeled data, beside PCA and an IsolationForest.

Input: a glob of labeled Parquet or TFRecord files (``--label_column``: true or
1 = anomaly, false or 0 = normal; default: the column the model was trained
with), and a model directory. The baselines are fitted on the model's own
training rows: the training input recorded in the model (or ``--train_input``)
is read again and split with the model's seed, and a sample of up to
``--baseline_rows`` of its training rows fits PCA (as many components as the
model's latent) and scikit-learn's IsolationForest.

Output under ``--output``:

* ``evaluation.json``: per method ROC-AUC, PR-AUC, precision@k and the confusion
  matrix at the threshold (the model's; the others flag as many rows), the
  row counts and the model version. Methods: ``autoenc`` (the reconstruction
  error), ``combined`` (the model's ``combined_score``, when it has the
  validation latent distances' percentiles), ``total_distance`` (the
  model's, when it keeps its validation rows' mean error), ``latent_distance`` (the model's
  latent distance, when the model has a latent distribution), ``pca``,
  ``isolation_forest``;
* ``report.html``: a self-contained report (curves, histograms, latent space,
  the highest-scoring rows);
* ``rejected/``: evaluation rows that failed validation, with reasons.

Read = evaluated + rejected, checked. The table is printed too.

Example:
    autoenc evaluate --input 'labeled/*.parquet' --model_dir models/demo \\
        --label_column is_fraud --output eval/demo
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time

import apache_beam as beam
import numpy as np
import pyarrow as pa

from autoenc import artifact as artifacts
from autoenc import report
from autoenc.errors import ConfigError, InputError
from autoenc.evaluation import IsolationForestBaseline, PCABaseline, compare, format_table
from autoenc.reservoir import Reservoir
from autoenc.schema import check_compatible, check_label_column
from autoenc.training import read_staged
from autoenc.validation import rejected_schema

from . import io, outputs, transforms
from .options import (
    EvaluateOptions,
    InputOptions,
    ScoreOptions,
    TrainOptions,
    parse,
    require,
    runner_name,
)
from .score import resolve_threshold
from .train import position_names, split_mask, split_rows

_log = logging.getLogger(__name__)
STAGING = ".staging"
RUN_INFO = ".evaluate-run.json"
REPORT_FILE = "report.html"
SAMPLE_SEED = 7919


EVALUATION = "evaluation.json"


def _labeled_chunk(valid):
    """(chunk key, features with the label as one more column)."""
    return valid.key, np.column_stack([valid.features, valid.labels.astype(np.float64)])


def _training_sample(valid, *, seed: int, fraction: float, sample: float, by: str, keys, names):
    """The model's training rows among ``valid`` (``split_rows``, as training
    split them), sampled deterministically (the same way, another seed) when
    ``sample`` < 1; as (chunk key, rows)."""
    _, features, to_validation, others = split_rows(
        valid, seed=seed, fraction=fraction, by=by, keys=keys, names=names
    )
    keep = ~to_validation
    if sample < 1:
        keep &= split_mask(
            valid, others, seed=seed + SAMPLE_SEED, fraction=sample, by=by, keys=keys, names=names
        )
    if keep.any():
        yield valid.key, features[keep]


@dataclasses.dataclass(frozen=True)
class EvaluateJob:
    """An evaluation run, resolved at launch from the options and the model.

    Attributes:
        artifact: the model version evaluated.
        label: the label column of the evaluation rows.
        threshold, threshold_method: the threshold the model's flags use.
        pattern: the evaluation input glob; plan, schema: its files and read schema.
        train_pattern: the model's training input (or ``--train_input``);
            train_plan, train_schema: its files and read schema.
        train_label: the training input's label column, when it still has it.
        baseline_rows: at most this many training rows fit the baselines.
        precision_at_k: ``k`` of precision@k (``None``: the labeled anomalies).
    """

    artifact: artifacts.ModelArtifact
    label: str
    threshold: float
    threshold_method: dict
    pattern: str
    plan: io.InputPlan
    schema: pa.Schema
    train_pattern: str
    train_plan: io.InputPlan
    train_schema: pa.Schema
    train_label: str | None
    baseline_rows: int
    precision_at_k: int | None

    @property
    def spec(self):
        return self.artifact.metadata.spec

    @property
    def seed(self) -> int:
        return self.artifact.metadata.hyperparameters["seed"]

    @property
    def split_by(self) -> str:
        return self.artifact.metadata.input.get("split_by", "position")

    @property
    def baseline_fraction(self) -> float:
        """The share of the model's training rows sampled for the baselines."""
        return min(1.0, self.baseline_rows / max(self.artifact.metadata.rows.get("train", 1), 1))


@dataclasses.dataclass(frozen=True)
class Staged:
    """What the Beam pass left under the output, checked."""

    counts: dict[str, int]
    eval_files: list[str]
    baseline_files: list[str]
    reconciliation: dict


@dataclasses.dataclass(frozen=True)
class Scored:
    """The evaluation rows scored by every method (a bounded uniform sample)."""

    sample: report.Sample
    labels: np.ndarray
    columns: dict[str, np.ndarray]
    results: dict
    pca_components: int


def check_options(options) -> str:
    """Checks the options that need no file; returns ``--output``.

    Raises:
        ConfigError: a bad option.
    """
    out = options.view_as(ScoreOptions)
    require(out, "output")
    if options.view_as(TrainOptions).target_fpr is not None:
        raise ConfigError("--target_fpr chooses a threshold at training; evaluate uses the model's.")
    opt = options.view_as(EvaluateOptions)
    if opt.baseline_rows < 1:
        raise ConfigError(f"--baseline_rows must be >= 1. Received: --baseline_rows={opt.baseline_rows}")
    return out.output


def plan_job(options) -> EvaluateJob:
    """Loads the model and checks both inputs (evaluation and training rows)
    before anything runs.

    Raises:
        InputError / ArtifactError: bad input or model. ConfigError: no label column.
    """
    inp = options.view_as(InputOptions)
    train_opt = options.view_as(TrainOptions)
    opt = options.view_as(EvaluateOptions)
    artifact = artifacts.load_artifact(inp.model_dir, version=options.view_as(ScoreOptions).model_version)
    meta = artifact.metadata
    spec = meta.spec
    label = train_opt.label_column or meta.input.get("label_column")
    if not label:
        raise ConfigError(
            "Pass --label_column: the column of known labels (true or 1: anomaly, false or 0: normal). "
            f"The model {artifact.path} was trained without one."
        )
    threshold, threshold_method = resolve_threshold(artifact, train_opt)
    plan = io.plan_input(inp.input, inp.format)
    check_compatible(spec, plan.schema, source=plan.files[0].path, model=artifact.path, copied=())
    check_label_column(plan.schema, label, source=plan.files[0].path)
    train_pattern = opt.train_input or meta.input["pattern"]
    try:
        train_plan = io.plan_input(train_pattern, meta.input.get("format"))
    except InputError as e:
        raise InputError(
            f"Cannot read the model's training data for the baselines: {e} Pass --train_input "
            "with the data the model was trained on."
        ) from e
    check_compatible(spec, train_plan.schema, source=train_plan.files[0].path, model=artifact.path, copied=())
    train_label = meta.input.get("label_column")
    if train_label and train_label not in train_plan.schema.names:
        train_label = None
    train_columns = {*spec.names, *spec.key_columns, *([train_label] if train_label else [])}
    return EvaluateJob(
        artifact=artifact,
        label=label,
        threshold=threshold,
        threshold_method=threshold_method,
        pattern=inp.input,
        plan=plan,
        schema=io.model_schema(plan.project({*spec.names, *spec.key_columns, label}), spec, plan.fmt),
        train_pattern=train_pattern,
        train_plan=train_plan,
        train_schema=io.model_schema(train_plan.project(train_columns), spec, train_plan.fmt),
        train_label=train_label,
        baseline_rows=opt.baseline_rows,
        precision_at_k=opt.precision_at_k,
    )


def announce(job: EvaluateJob) -> None:
    """Says what is about to run."""
    print(
        f"autoenc evaluate: {len(job.plan.files)} file(s) labeled by '{job.label}', model version "
        f"{job.artifact.version}; baselines fitted on up to {job.baseline_rows} of its training rows "
        f"({job.train_pattern})",
        file=sys.stderr,
    )


def build_pipeline(p: beam.Pipeline, job: EvaluateJob, out: outputs.OutputRun, *, batch_rows, batch_bytes):
    """The evaluation's Beam pass: read and validate the labeled rows, write
    the rejected ones, stage the valid ones with their labels; read the
    model's training input again, keep a sample of its training rows (split
    as training split them) and stage it for the baselines; write the counts."""
    spec = job.spec
    staging = out.attempt(STAGING)
    batching = dict(batch_rows=batch_rows, batch_bytes=batch_bytes)
    chunks = p | "ReadRecords" >> io.ReadRecords(job.plan, schema=job.schema, spec=spec, **batching)
    checked = chunks | "Validate" >> transforms.Validate(spec, label_column=job.label)
    checked[transforms.REJECTED] | "WriteRejected" >> io.WriteParquet(
        out.attempt("rejected"), rejected_schema(job.schema)
    )
    evaluated = (
        checked.valid
        | "StageLabeled" >> beam.Map(_labeled_chunk)
        | "WriteLabeled" >> transforms.StageRows(staging, "eval")
    )
    split_keys = spec.key_columns if job.split_by == "key" else ()
    hyper = job.artifact.metadata.hyperparameters
    baseline = (
        p
        | "ReadTrainingRecords"
        >> io.ReadRecords(job.train_plan, schema=job.train_schema, spec=spec, **batching)
        | "ValidateTraining"
        >> transforms.Validate(spec, keep_columns=split_keys, label_column=job.train_label)
    ).valid | "SampleTraining" >> beam.FlatMap(
        _training_sample,
        seed=hyper["seed"],
        fraction=hyper["validation_fraction"],
        sample=job.baseline_fraction,
        by=job.split_by,
        keys=split_keys,
        names=position_names(job.train_plan.pattern, [f.path for f in job.train_plan.files]),
    )
    baseline_count = baseline | "WriteBaseline" >> transforms.StageRows(staging, "baseline")
    (
        [checked[transforms.COUNTS], evaluated, baseline_count]
        | "AllCounts" >> beam.Flatten()
        | "WriteRunInfo" >> transforms.WriteRunInfo(out.attempt(RUN_INFO))
    )


def check_staged(job: EvaluateJob, out: outputs.OutputRun) -> Staged:
    """Reads the pass's counts and checks that every evaluation row read was
    staged or rejected, and that training rows were found for the baselines.

    Raises:
        ReconciliationError: a row lost or duplicated. ConfigError: no training rows.
    """
    info = transforms.read_run_info(out.attempt(RUN_INFO))
    counts = {k: info["counts"].get(k, 0) for k in ("read", "eval", "rejected", "baseline")}
    counts["evaluated"] = counts.pop("eval")
    io.ensure_schema_file(out.attempt("rejected"), rejected_schema(job.schema))
    staged = io.list_files(out.attempt(STAGING), ".tfrecord")
    rejected_files = io.footer_rows(out.attempt("rejected"))
    reconciliation = transforms.reconcile(
        declared=job.plan.expected_rows,
        counts=counts,
        outcomes=("evaluated", "rejected"),
        written={"rejected": sum(rows for _, rows in rejected_files)},
    )
    if not reconciliation["reconciled"]:
        raise transforms.reconciliation_error(reconciliation, out.output)
    if counts["baseline"] == 0:
        raise ConfigError(
            f"No training rows found for the baselines in {job.train_pattern}; pass --train_input "
            "with the data the model was trained on."
        )
    return Staged(
        counts=counts,
        eval_files=[path for path, _ in staged if path.rsplit("/", 1)[-1].startswith("eval-")],
        baseline_files=[path for path, _ in staged if path.rsplit("/", 1)[-1].startswith("baseline-")],
        reconciliation=reconciliation,
    )


def fit_baselines(job: EvaluateJob, staged: Staged):
    """PCA (the model's latent width) and an IsolationForest fitted on at most
    ``baseline_rows`` of the staged training rows (a uniform sample of them
    when the training input holds more than the model trained on)."""
    fit_sample = Reservoir(job.baseline_rows, seed=job.seed)
    for chunk in read_staged(staged.baseline_files, job.spec.model_width):
        fit_sample.add(x=chunk)
    fit_rows = fit_sample.columns()["x"]
    print(
        f"autoenc evaluate: fitting PCA ({job.artifact.metadata.latent_dim} components) and "
        f"IsolationForest on {len(fit_rows)} training rows",
        file=sys.stderr,
    )
    return PCABaseline.fit(fit_rows, job.artifact.metadata.latent_dim), IsolationForestBaseline(
        fit_rows, seed=job.seed
    )


def score_methods(job: EvaluateJob, staged: Staged, pca, forest) -> Scored:
    """Scores the staged evaluation rows with the model and the baselines and
    compares the methods on a bounded uniform sample of them."""
    spec = job.spec
    shape = report.image_shape(spec, job.artifact.metadata.model_kind)
    sample = report.collect_sample(
        read_staged(staged.eval_files, spec.model_width + 1),
        job.artifact.scorer(job.threshold, top_k=min(3, spec.n_features)),
        autoencoder=job.artifact.model if shape else None,
        with_labels=True,
        extra_scores=lambda x: {"pca": pca.score(x), "isolation_forest": forest.score(x)},
        seed=job.seed,
    )
    labels = sample.labels if sample.labels is not None else np.zeros(0, bool)
    columns = {"autoenc": sample.errors}
    if "combined" in sample.extra:
        columns["combined"] = sample.extra["combined"]
    if "total" in sample.extra:
        columns["total_distance"] = sample.extra["total"]
    if sample.latent_distances is not None:
        columns["latent_distance"] = sample.latent_distances
    for name in ("pca", "isolation_forest"):
        columns[name] = sample.extra.get(name, np.zeros(0))
    results = compare(labels, columns, threshold=job.threshold, k=job.precision_at_k)
    return Scored(
        sample=sample,
        labels=labels,
        columns=columns,
        results=results,
        pca_components=int(pca.components.shape[0]),
    )


def summarize(
    job: EvaluateJob, out: outputs.OutputRun, staged: Staged, scored: Scored, options, started
) -> dict:
    """The content of ``evaluation.json``."""
    meta = job.artifact.metadata
    labels = scored.labels
    return {
        "run_id": out.run_id,
        "methods": scored.results,
        "counts": {**staged.counts, "labeled_anomalous": int(labels.sum())},
        "metrics_rows": {
            "rows": int(len(labels)),
            "sampled": scored.sample.rows > len(labels),
            "of": scored.sample.rows,
        },
        "reconciled": staged.reconciliation["reconciled"],
        "reconciliation": staged.reconciliation["checks"],
        "label_column": job.label,
        "threshold": {"value": job.threshold, **job.threshold_method},
        "model": {
            "dir": options.view_as(InputOptions).model_dir,
            "version": job.artifact.version,
            "kind": meta.model_kind,
        },
        "input": job.plan.describe(),
        "baselines": {
            "fitted_on": job.train_pattern,
            "rows": min(staged.counts["baseline"], job.baseline_rows),
            "pca_components": scored.pca_components,
        },
        "runner": runner_name(options),
        "wall_time_s": round(time.time() - started, 3),
        "finished_at": artifacts.utc_now(),
    }


def write_report(job: EvaluateJob, out: outputs.OutputRun, evaluation: dict, scored: Scored) -> None:
    """Writes ``report.html``: curves, histograms, latent space, top rows."""
    meta = job.artifact.metadata
    counts = evaluation["counts"]
    sample = scored.sample
    facts = {
        "model": f"{job.artifact.version} ({meta.model_kind}, latent width {meta.latent_dim})",
        "evaluated on": job.pattern,
        "rows": f"read {counts['read']}, evaluated {counts['evaluated']} ({counts['labeled_anomalous']} labeled "
        f"anomalous by '{job.label}'), rejected {counts['rejected']}",
        "threshold": f"{job.threshold:.6g} ({job.threshold_method['method']}, "
        f"set at {job.threshold_method['set_at']})",
        "baselines fitted on": f"{evaluation['baselines']['rows']} training rows of {job.train_pattern}",
        "finished": evaluation["finished_at"],
    }
    if sample.rows > len(scored.labels):
        facts["metrics on"] = f"a uniform sample of {len(scored.labels)} of the {sample.rows} evaluated rows"
    io.write_bytes(
        artifacts.join(out.output, REPORT_FILE),
        report.render(
            title=f"autoenc evaluation of model {job.artifact.version}",
            facts=facts,
            sample=sample,
            threshold=job.threshold,
            feature_names=list(job.spec.model_names),
            feature_sizes=list(job.spec.model_sizes),
            categories=report.category_labels(job.spec),
            shape=report.image_shape(job.spec, meta.model_kind),
            history=meta.history,
            results=scored.results,
            method_scores=scored.columns,
            what="evaluated rows",
        ).encode(),
    )


def run(argv=None, save_main_session=False) -> dict:
    """Runs the evaluation. Returns the figures (also written to evaluation.json).

    Args:
        argv: command-line arguments (without the program name).
        save_main_session: pickle the main session for remote workers.
    """
    options = parse(argv, save_main_session=save_main_session)
    inp = options.view_as(InputOptions)
    output = check_options(options)
    # The output's lock first; then, until this run succeeds, no evaluation.json
    # (nor report) claims to be current.
    with outputs.OutputRun(output, markers=(EVALUATION, REPORT_FILE)) as out:
        started = time.time()
        job = plan_job(options)
        announce(job)
        with beam.Pipeline(options=options) as p:
            build_pipeline(p, job, out, batch_rows=inp.read_batch_rows, batch_bytes=inp.read_batch_bytes)
        staged = check_staged(job, out)
        pca, forest = fit_baselines(job, staged)
        scored = score_methods(job, staged, pca, forest)
        out.commit(("rejected",))
        evaluation = summarize(job, out, staged, scored, options, started)
        write_report(job, out, evaluation, scored)
        out.finish(EVALUATION, json.dumps(evaluation, indent=2).encode())
    print_result(evaluation, output)
    return evaluation


def print_result(evaluation: dict, output: str) -> None:
    """Prints the counts, the table of methods and where the files are."""
    counts = evaluation["counts"]
    print(
        f"autoenc evaluate: read {counts['read']} rows: {counts['evaluated']} evaluated "
        f"({counts['labeled_anomalous']} labeled anomalous), {counts['rejected']} rejected, in "
        f"{evaluation['wall_time_s']:.1f} s.\n{format_table(evaluation['methods'])}\n"
        f"  evaluation: {artifacts.join(output, EVALUATION)}\n"
        f"  report:     {artifacts.join(output, REPORT_FILE)}",
        file=sys.stderr,
    )


def main(argv=None):
    from .cli import run_command

    return run_command(run, sys.argv[1:] if argv is None else argv, "evaluate")


if __name__ == "__main__":
    sys.exit(main())
