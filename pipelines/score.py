"""Score Parquet or TFRecord data with a trained model: latent vector,
reconstruction error and anomaly flag for every valid row.

Input: a glob of Parquet files or TFRecord files of ``tf.train.Example``, and a
model directory written by ``autoenc train``. Output under ``--output``:

* ``scores/part-<chunk>.parquet``: the key columns (every input column with
  ``--passthrough``), ``latent`` (list<float32>), ``reconstruction_error``
  (float64, mean squared error over the normalized features; higher = more
  anomalous) and ``is_anomaly`` (bool, error above the model's threshold);
  one file per input chunk, named by its place in the input;
* ``rejected/part-<chunk>.parquet``: rows that failed validation, with the
  values of the columns read, ``reason``, ``source_file`` and ``source_row``;
* ``summary.json``: counts, their reconciliation (read = the rows the input
  footers declare = scored + rejected = the rows in the written files),
  threshold, model version, every input file, every output file with its
  rows, wall time. Deleted when a run starts and written last, only when the
  job succeeded and the counts reconcile: a scheduler checks for it.

A run holds ``--output``'s lock, writes under its own attempt directory and
moves its results into place when the job succeeded (``autoenc_beam.outputs``),
so re-running with the same ``--output`` replaces the earlier result with no
stale, duplicate or partial files, even after a killed run, and a second run
on the same ``--output`` fails at once.

The hot path is columnar (Arrow batches -> numpy -> one model call per batch ->
Arrow), and the model is loaded once per worker process.

Example:
    autoenc score --input 'data/*.parquet' --model_dir models/demo --output scores/demo
    python -m autoenc_beam.score --input 'in/*.tfrecord' --model_dir models/demo \\
        --output out --passthrough --runner DirectRunner
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

import apache_beam as beam
import numpy as np
import pyarrow as pa

from autoenc import artifact as artifacts
from autoenc.errors import ConfigError
from autoenc.schema import check_compatible
from autoenc.scoring import drift
from autoenc.validation import rejected_schema

from . import inference, io, outputs, transforms
from .options import (
    InputOptions,
    ScoreOptions,
    TrainOptions,
    check_threshold_options,
    parse,
    require,
    runner_name,
)

RUN_INFO = ".score-run.json"


def scores_schema(kept: pa.Schema, setup: inference.ScoringSetup) -> pa.Schema:
    """Schema of ``scores/``: the kept input columns, then the score columns."""
    return pa.schema(list(kept) + setup.fields())


class _SumHistograms(beam.CombineFn):
    def __init__(self, size: int):
        self._size = size

    def create_accumulator(self):
        return np.zeros(self._size, dtype=np.int64)

    def add_input(self, accumulator, histogram):
        return accumulator + histogram

    def merge_accumulators(self, accumulators):
        return sum(accumulators, self.create_accumulator())

    def extract_output(self, accumulator):
        return accumulator


def resolve_threshold(artifact, opt) -> tuple[float, dict]:
    """The threshold of this run and how it was set: the model's, or the
    ``--threshold`` / ``--contamination`` given at scoring.

    Raises:
        ConfigError: both given, or a value out of range.
    """
    check_threshold_options(opt)
    return inference.resolve_threshold(
        artifact.metadata, threshold=opt.threshold, contamination=opt.contamination
    )


SUMMARY = "summary.json"
OUTPUTS = ("scores", "rejected")


@dataclasses.dataclass(frozen=True)
class ScoreJob:
    """A scoring run, resolved at launch from the options.

    Attributes:
        setup: the model version, threshold and score columns.
        plan: the input files (``io.plan_input``).
        schema: the schema the input is read with (the needed columns only).
        keep: the input columns copied to the scores.
        output: the output directory.
    """

    setup: inference.ScoringSetup
    plan: io.InputPlan
    schema: pa.Schema
    keep: tuple[str, ...]
    output: str

    @property
    def scores_schema(self) -> pa.Schema:
        return scores_schema(pa.schema([self.schema.field(name) for name in self.keep]), self.setup)

    @property
    def rejected_schema(self) -> pa.Schema:
        return rejected_schema(self.schema)


def check_options(options) -> str:
    """Checks the options that need no file; returns ``--output``.

    Raises:
        ConfigError: a bad option.
    """
    opt = options.view_as(ScoreOptions)
    require(opt, "output")
    train_opt = options.view_as(TrainOptions)
    for name in ("label_column", "target_fpr"):
        if getattr(train_opt, name) is not None:
            raise ConfigError(
                f"--{name} is an option of 'autoenc train' and 'autoenc evaluate', not of scoring. "
                "To keep a label column in the scores, pass --passthrough."
            )
    if opt.explain_top_k < 0:
        raise ConfigError(f"--explain_top_k must be >= 0. Received: --explain_top_k={opt.explain_top_k}")
    check_threshold_options(train_opt)
    return opt.output


def plan_job(options) -> ScoreJob:
    """Checks the model and the input files before anything runs.

    Raises:
        InputError / ArtifactError: bad input or model. ConfigError: a bad option.
    """
    inp = options.view_as(InputOptions)
    opt = options.view_as(ScoreOptions)
    train_opt = options.view_as(TrainOptions)
    setup = inference.scoring_setup(
        inp.model_dir,
        opt.model_version,
        threshold=train_opt.threshold,
        contamination=train_opt.contamination,
        explain_top_k=opt.explain_top_k,
        error_map=opt.error_map,
    )
    spec = setup.spec
    plan = io.plan_input(inp.input, inp.format)
    keep = tuple(plan.schema.names) if opt.passthrough else spec.key_columns
    model = artifacts.join(inp.model_dir, setup.version)
    check_compatible(spec, plan.schema, source=plan.files[0].path, model=model, copied=keep)
    # Only the columns the job needs are read: the features and the kept ones.
    schema = io.model_schema(plan.project(set(keep) | set(spec.names)), spec, plan.fmt)
    return ScoreJob(setup=setup, plan=plan, schema=schema, keep=keep, output=opt.output)


def build_pipeline(p: beam.Pipeline, job: ScoreJob, out: outputs.OutputRun, *, batch_rows, batch_bytes):
    """The scoring job's transforms: read, score (validation inside), write
    the scores, the rejected rows and the counts."""
    chunks = p | "ReadRecords" >> io.ReadRecords(
        job.plan, schema=job.schema, spec=job.setup.spec, batch_rows=batch_rows, batch_bytes=batch_bytes
    )
    result = chunks | "Score" >> inference.Score(job.setup.model_dir, setup=job.setup, keep=job.keep)
    result.scores | "WriteScores" >> io.WriteParquet(out.attempt("scores"), job.scores_schema)
    result.rejected | "WriteRejected" >> io.WriteParquet(out.attempt("rejected"), job.rejected_schema)
    histogram = result.histogram | "SumHistograms" >> beam.CombineGlobally(
        _SumHistograms(len(job.setup.quantiles) + 1)
    )
    result.counts | "WriteRunInfo" >> transforms.WriteRunInfo(out.attempt(RUN_INFO), histogram=histogram)


def run(argv=None, save_main_session=False) -> dict:
    """Runs the scoring job. Returns the summary (also written to summary.json).

    Args:
        argv: command-line arguments (without the program name).
        save_main_session: pickle the main session for remote workers.
    """
    options = parse(argv, save_main_session=save_main_session)
    inp = options.view_as(InputOptions)
    output = check_options(options)
    # First the output's lock, then (also when this run fails later) nothing
    # claims --output holds a finished result until this run succeeds.
    with outputs.OutputRun(output, markers=(SUMMARY,)) as out:
        started = time.time()
        job = plan_job(options)
        announce(job, options)
        with beam.Pipeline(options=options) as p:
            build_pipeline(p, job, out, batch_rows=inp.read_batch_rows, batch_bytes=inp.read_batch_bytes)
        info = transforms.read_run_info(out.attempt(RUN_INFO))
        written = check_outputs(job, out, info)
        out.commit(OUTPUTS)
        summary = summarize(job, out, info, written, options, started)
        out.finish(SUMMARY, json.dumps(summary, indent=2).encode())
    report(summary, job.output)
    return summary


def announce(job: ScoreJob, options) -> None:
    """Says what is about to run."""
    print(
        f"autoenc score: {len(job.plan.files)} file(s) with model version {job.setup.version} "
        f"on {runner_name(options)}",
        file=sys.stderr,
    )
    if not job.setup.latent_distance:
        print(
            f"autoenc score: model version {job.setup.version} was written before autoenc stored "
            "the latent distribution; scores/ has no latent_distance column (retrain to get it).",
            file=sys.stderr,
        )


def counts_of(info: dict) -> dict:
    return {k: info["counts"].get(k, 0) for k in ("read", "scored", "rejected", "anomalies", "extreme")}


def check_outputs(job: ScoreJob, out: outputs.OutputRun, info: dict) -> dict:
    """Every output directory has a file with its schema, and the rows in the
    written files reconcile with the input's and the job's counts.

    Returns:
        output name -> [(file, rows)].

    Raises:
        ReconciliationError: a row lost or duplicated.
    """
    io.ensure_schema_file(out.attempt("scores"), job.scores_schema)
    io.ensure_schema_file(out.attempt("rejected"), job.rejected_schema)
    written = {name: io.footer_rows(out.attempt(name)) for name in OUTPUTS}
    reconciliation = transforms.reconcile(
        declared=job.plan.expected_rows,
        counts=counts_of(info),
        outcomes=("scored", "rejected"),
        written={
            "scored": sum(rows for _, rows in written["scores"]),
            "rejected": sum(rows for _, rows in written["rejected"]),
        },
    )
    if not reconciliation["reconciled"]:
        raise transforms.reconciliation_error(reconciliation, job.output)
    return {"files": written, "reconciliation": reconciliation}


def summarize(job: ScoreJob, out: outputs.OutputRun, info: dict, written: dict, options, started) -> dict:
    """The content of ``summary.json``."""
    opt = options.view_as(ScoreOptions)
    ignored = {
        k.removeprefix(transforms.UNKNOWN_FEATURE): v
        for k, v in info["counts"].items()
        if k.startswith(transforms.UNKNOWN_FEATURE)
    }
    shift = drift(
        np.asarray(info["histogram"], dtype=np.int64),
        job.setup.quantiles,
        max_ks=opt.drift_max_ks,
        max_median_ratio=opt.drift_max_median_ratio,
    )
    spec = job.setup.spec
    unseen = None
    if spec.categorical_features:
        unseen = transforms.unseen_summary(
            info["counts"], spec, job.setup.categorical, max_share=opt.drift_max_unseen
        )
        if unseen["warning"]:
            shift["warning"] = "; ".join(filter(None, [shift["warning"], unseen["warning"]]))
    return {
        "run_id": out.run_id,
        "counts": counts_of(info),
        "reconciled": written["reconciliation"]["reconciled"],
        "reconciliation": written["reconciliation"]["checks"],
        "threshold": {"value": job.setup.threshold, **job.setup.threshold_method},
        "drift": shift,
        "model": {"dir": job.setup.model_dir, "version": job.setup.version},
        "input": job.plan.describe(),
        **({"ignored_tfrecord_features": ignored} if ignored else {}),
        **(
            {"imputed": transforms.imputed_summary(info["counts"], job.setup.spec.imputation)}
            if job.setup.spec.imputation is not None
            else {}
        ),
        **({"unseen": unseen} if unseen is not None else {}),
        "runner": runner_name(options),
        "outputs": {
            name: {
                "dir": artifacts.join(job.output, name),
                "files": [{"name": file, "rows": rows} for file, rows in written["files"][name]],
            }
            for name in OUTPUTS
        },
        "wall_time_s": round(time.time() - started, 3),
        "finished_at": artifacts.utc_now(),
    }


def report(summary: dict, output: str) -> None:
    """Prints the run's outcome (and warnings: drift, unread TFRecord features)."""
    counts = summary["counts"]
    threshold = summary["threshold"]
    extreme = (
        f", {counts['extreme']} of them beyond the model's float32 range (error +inf)"
        if counts["extreme"]
        else ""
    )
    imputed = summary.get("imputed")
    imputed = (
        f"; {imputed['rows']} of the scored rows had missing values imputed ({imputed['values']} values)"
        if imputed and imputed["rows"]
        else ""
    )
    unseen = summary.get("unseen")
    if unseen and unseen["rows"]:
        imputed += f"; {unseen['rows']} had a categorical value outside the model's categories"
    print(
        f"autoenc score: read {counts['read']} rows: {counts['scored']} scored "
        f"({counts['anomalies']} anomalies above threshold {threshold['value']:.6g}, {threshold['method']}"
        f"{extreme}), {counts['rejected']} rejected{imputed}, in {summary['wall_time_s']:.1f} s.\n"
        f"  scores:   {summary['outputs']['scores']['dir']}/\n"
        f"  rejected: {summary['outputs']['rejected']['dir']}/\n"
        f"  summary:  {artifacts.join(output, SUMMARY)}",
        file=sys.stderr,
    )
    unindicated = (summary.get("imputed") or {}).get("without_indicator")
    if unindicated:
        by_column = summary["imputed"]["by_column"]
        print(
            "autoenc score: WARNING: missing values in column(s) that had none in the model's "
            "training sample: "
            + ", ".join(f"'{name}' ({by_column[name]} rows)" for name in unindicated)
            + ". They took the training median; the model has no missing indicator for these "
            "columns, so such a row can score as normal. Column imputed_values counts them per row.",
            file=sys.stderr,
        )
    ignored = summary.get("ignored_tfrecord_features")
    if ignored:
        print(
            "autoenc score: WARNING: TFRecord features not in the schema inferred at launch were not "
            f"read: {', '.join(f'{k} ({v} records)' for k, v in sorted(ignored.items()))}.",
            file=sys.stderr,
        )
    if summary["drift"]["warning"]:
        # Printed once, like the outcome above (not also logged: both reach stderr).
        print(
            f"autoenc score: WARNING: this run's data differs from the model's training data "
            f"({summary['drift']['warning']}): the data may have drifted and the model "
            f"({summary['model']['version']}) may be stale. See 'drift'"
            + (" and 'unseen'" if summary.get("unseen", {}).get("warning") else "")
            + " in summary.json.",
            file=sys.stderr,
        )


def main(argv=None):
    from .cli import command_process, run_command

    if argv is None:  # the program itself (python -m autoenc_beam.score)
        with command_process():
            return run_command(run, sys.argv[1:], "score")
    return run_command(run, argv, "score")


if __name__ == "__main__":
    sys.exit(main())
