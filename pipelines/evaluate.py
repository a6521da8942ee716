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
  error), ``latent_distance`` (the model's latent distance, when the model has
  a latent distribution), ``pca``, ``isolation_forest``;
* ``report.html``: a self-contained report (curves, histograms, latent space,
  the highest-scoring rows);
* ``rejected/``: evaluation rows that failed validation, with reasons.

Read = evaluated + rejected, checked. The table is printed too.

Example:
    autoenc evaluate --input 'labeled/*.parquet' --model_dir models/demo \\
        --label_column is_fraud --output eval/demo
"""

from __future__ import annotations

import json
import logging
import sys
import time

import apache_beam as beam
import numpy as np

from autoenc import artifact as artifacts
from autoenc import report
from autoenc.errors import ConfigError, InputError
from autoenc.evaluation import IsolationForestBaseline, PCABaseline, compare, format_table
from autoenc.reservoir import Reservoir
from autoenc.schema import check_compatible, check_label_column
from autoenc.training import read_staged
from autoenc.validation import rejected_schema
from pipelines import io, outputs, transforms
from pipelines.options import (
    EvaluateOptions,
    InputOptions,
    ScoreOptions,
    TrainOptions,
    parse,
    require,
    runner_name,
)
from pipelines.score import resolve_threshold
from pipelines.train import split_mask, split_rows

_log = logging.getLogger(__name__)
STAGING = ".staging"
RUN_INFO = ".evaluate-run.json"
REPORT_FILE = "report.html"
SAMPLE_SEED = 7919


EVALUATION = "evaluation.json"


def _labeled_chunk(valid):
    """(chunk key, features with the label as one more column)."""
    return valid.key, np.column_stack([valid.features, valid.labels.astype(np.float64)])


def _training_sample(valid, *, seed: int, fraction: float, sample: float, by: str, keys):
    """The model's training rows among ``valid`` (``split_rows``, as training
    split them), sampled deterministically (the same way, another seed) when
    ``sample`` < 1; as (chunk key, rows)."""
    _, features, to_validation, others = split_rows(valid, seed=seed, fraction=fraction, by=by, keys=keys)
    keep = ~to_validation
    if sample < 1:
        keep &= split_mask(valid, others, seed=seed + SAMPLE_SEED, fraction=sample, by=by, keys=keys)
    if keep.any():
        yield valid.key, features[keep]


def run(argv=None, save_main_session=False) -> dict:
    """Runs the evaluation. Returns the figures (also written to evaluation.json).

    Args:
        argv: command-line arguments (without the program name).
        save_main_session: pickle the main session for remote workers.
    """
    options = parse(argv, save_main_session=save_main_session)
    out = options.view_as(ScoreOptions)
    train_opt = options.view_as(TrainOptions)
    opt = options.view_as(EvaluateOptions)
    require(out, "output")
    if train_opt.target_fpr is not None:
        raise ConfigError("--target_fpr chooses a threshold at training; evaluate uses the model's.")
    if opt.baseline_rows < 1:
        raise ConfigError(f"--baseline_rows must be >= 1. Received: --baseline_rows={opt.baseline_rows}")
    # The output's lock first; then, until this run succeeds, no evaluation.json
    # (nor report) claims to be current.
    with outputs.OutputRun(out.output, markers=(EVALUATION, REPORT_FILE)) as run:
        return _evaluate(options, out, train_opt, opt, run)


def _evaluate(options, out, train_opt, opt, run) -> dict:
    inp = options.view_as(InputOptions)
    started = time.time()
    artifact = artifacts.load_artifact(inp.model_dir, version=out.model_version)
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
    hyper = meta.hyperparameters
    sample = min(1.0, opt.baseline_rows / max(meta.rows.get("train", 1), 1))
    split_by = meta.input.get("split_by", "position")
    split_keys = spec.key_columns if split_by == "key" else ()
    schema = io.model_schema(plan.project({*spec.names, *spec.key_columns, label}), spec, plan.fmt)
    train_columns = {*spec.names, *spec.key_columns, *([train_label] if train_label else [])}
    train_schema = io.model_schema(train_plan.project(train_columns), spec, train_plan.fmt)

    staging = run.attempt(STAGING)
    print(
        f"autoenc evaluate: {len(plan.files)} file(s) labeled by '{label}', model version {artifact.version}; "
        f"baselines fitted on up to {opt.baseline_rows} of its training rows ({train_pattern})",
        file=sys.stderr,
    )
    info_path = run.attempt(RUN_INFO)
    batching = dict(batch_rows=inp.read_batch_rows, batch_bytes=inp.read_batch_bytes)
    with beam.Pipeline(options=options) as p:
        chunks = p | "ReadRecords" >> io.ReadRecords(plan, schema=schema, spec=spec, **batching)
        checked = chunks | "Validate" >> transforms.Validate(spec, label_column=label)
        checked[transforms.REJECTED] | "WriteRejected" >> io.WriteParquet(
            run.attempt("rejected"), rejected_schema(schema)
        )
        evaluated = (
            checked.valid
            | "StageLabeled" >> beam.Map(_labeled_chunk)
            | "WriteLabeled" >> transforms.StageRows(staging, "eval")
        )
        train_chunks = p | "ReadTrainingRecords" >> io.ReadRecords(
            train_plan, schema=train_schema, spec=spec, **batching
        )
        baseline = (
            train_chunks
            | "ValidateTraining"
            >> transforms.Validate(spec, keep_columns=split_keys, label_column=train_label)
        ).valid | "SampleTraining" >> beam.FlatMap(
            _training_sample,
            seed=hyper["seed"],
            fraction=hyper["validation_fraction"],
            sample=sample,
            by=split_by,
            keys=split_keys,
        )
        baseline_count = baseline | "WriteBaseline" >> transforms.StageRows(staging, "baseline")
        (
            [checked[transforms.COUNTS], evaluated, baseline_count]
            | "AllCounts" >> beam.Flatten()
            | "WriteRunInfo" >> transforms.WriteRunInfo(info_path)
        )

    info = transforms.read_run_info(info_path)
    counts = {k: info["counts"].get(k, 0) for k in ("read", "eval", "rejected", "baseline")}
    counts["evaluated"] = counts.pop("eval")
    io.ensure_schema_file(run.attempt("rejected"), rejected_schema(schema))
    staged = io.list_files(staging, ".tfrecord")
    eval_files = [path for path, _ in staged if path.rsplit("/", 1)[-1].startswith("eval-")]
    baseline_files = [path for path, _ in staged if path.rsplit("/", 1)[-1].startswith("baseline-")]
    rejected_files = io.footer_rows(run.attempt("rejected"))
    reconciliation = transforms.reconcile(
        declared=plan.expected_rows,
        counts=counts,
        outcomes=("evaluated", "rejected"),
        written={"rejected": sum(rows for _, rows in rejected_files)},
    )
    if not reconciliation["reconciled"]:
        raise transforms.reconciliation_error(reconciliation, out.output)
    if counts["baseline"] == 0:
        raise ConfigError(
            f"No training rows found for the baselines in {train_pattern}; pass --train_input "
            "with the data the model was trained on."
        )
    # At most --baseline_rows of the sampled training rows (a uniform sample
    # of them when the training input holds more than the model trained on).
    fit_sample = Reservoir(opt.baseline_rows, seed=hyper["seed"])
    for chunk in read_staged(baseline_files, spec.width):
        fit_sample.add(x=chunk)
    fit_rows = fit_sample.columns()["x"]
    print(
        f"autoenc evaluate: fitting PCA ({meta.latent_dim} components) and IsolationForest on "
        f"{len(fit_rows)} training rows",
        file=sys.stderr,
    )
    pca = PCABaseline.fit(fit_rows, meta.latent_dim)
    forest = IsolationForestBaseline(fit_rows, seed=hyper["seed"])
    del fit_rows, fit_sample
    sizes = [f.size for f in spec.features]
    shape = report.image_shape(spec, meta.model_kind)
    sample = report.collect_sample(
        read_staged(eval_files, spec.width + 1),
        artifact.scorer(threshold, top_k=min(3, len(sizes))),
        autoencoder=artifact.model if shape else None,
        with_labels=True,
        extra_scores=lambda x: {"pca": pca.score(x), "isolation_forest": forest.score(x)},
        seed=hyper["seed"],
    )
    labels = sample.labels if sample.labels is not None else np.zeros(0, bool)
    columns = {"autoenc": sample.errors}
    if sample.latent_distances is not None:
        columns["latent_distance"] = sample.latent_distances
    for name in ("pca", "isolation_forest"):
        columns[name] = sample.extra.get(name, np.zeros(0))
    results = compare(labels, columns, threshold=threshold, k=opt.precision_at_k)
    run.commit(("rejected",))
    evaluation = {
        "run_id": run.run_id,
        "methods": results,
        "counts": {**counts, "labeled_anomalous": int(labels.sum())},
        "metrics_rows": {"rows": int(len(labels)), "sampled": sample.rows > len(labels), "of": sample.rows},
        "reconciled": reconciliation["reconciled"],
        "reconciliation": reconciliation["checks"],
        "label_column": label,
        "threshold": {"value": threshold, **threshold_method},
        "model": {"dir": inp.model_dir, "version": artifact.version, "kind": meta.model_kind},
        "input": plan.describe(),
        "baselines": {
            "fitted_on": train_pattern,
            "rows": min(counts["baseline"], opt.baseline_rows),
            "pca_components": int(pca.components.shape[0]),
        },
        "runner": runner_name(options),
        "wall_time_s": round(time.time() - started, 3),
        "finished_at": artifacts.utc_now(),
    }
    facts = {
        "model": f"{artifact.version} ({meta.model_kind}, latent width {meta.latent_dim})",
        "evaluated on": inp.input,
        "rows": f"read {counts['read']}, evaluated {counts['evaluated']} ({int(labels.sum())} labeled "
        f"anomalous by '{label}'), rejected {counts['rejected']}",
        "threshold": f"{threshold:.6g} ({threshold_method['method']}, set at {threshold_method['set_at']})",
        "baselines fitted on": f"{evaluation['baselines']['rows']} training rows of {train_pattern}",
        "finished": evaluation["finished_at"],
    }
    if sample.rows > len(labels):
        facts["metrics on"] = f"a uniform sample of {len(labels)} of the {sample.rows} evaluated rows"
    io.write_bytes(
        artifacts.join(out.output, REPORT_FILE),
        report.render(
            title=f"autoenc evaluation of model {artifact.version}",
            facts=facts,
            sample=sample,
            threshold=threshold,
            feature_names=[f.name for f in spec.features],
            feature_sizes=sizes,
            shape=shape,
            history=meta.history,
            results=results,
            method_scores=columns,
            what="evaluated rows",
        ).encode(),
    )
    path = run.finish(EVALUATION, json.dumps(evaluation, indent=2).encode())
    print(
        f"autoenc evaluate: read {counts['read']} rows: {counts['evaluated']} evaluated "
        f"({int(labels.sum())} labeled anomalous), {counts['rejected']} rejected, in "
        f"{evaluation['wall_time_s']:.1f} s.\n{format_table(results)}\n"
        f"  evaluation: {path}\n"
        f"  report:     {artifacts.join(out.output, REPORT_FILE)}",
        file=sys.stderr,
    )
    return evaluation


def main(argv=None):
    from pipelines.cli import run_command

    return run_command(run, sys.argv[1:] if argv is None else argv, "evaluate")


if __name__ == "__main__":
    sys.exit(main())
