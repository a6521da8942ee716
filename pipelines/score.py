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
moves its results into place when the job succeeded (``pipelines.outputs``),
so re-running with the same ``--output`` replaces the earlier result with no
stale, duplicate or partial files, even after a killed run, and a second run
on the same ``--output`` fails at once.

The hot path is columnar (Arrow batches -> numpy -> one model call per batch ->
Arrow), and the model is loaded once per worker process.

Example:
    autoenc score --input 'data/*.parquet' --model_dir models/demo --output scores/demo
    python -m pipelines.score --input 'in/*.tfrecord' --model_dir models/demo \\
        --output out --passthrough --runner DirectRunner
"""

from __future__ import annotations

import json
import logging
import sys
import time

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.utils import shared

from autoenc import artifact as artifacts
from autoenc.errors import ConfigError
from autoenc.schema import check_compatible
from autoenc.scoring import drift, error_histogram, score_columns, score_fields, threshold_from_quantiles
from autoenc.validation import rejected_schema
from pipelines import io, outputs, transforms
from pipelines.options import (
    InputOptions,
    ScoreOptions,
    TrainOptions,
    check_threshold_options,
    parse,
    require,
    runner_name,
)

_log = logging.getLogger(__name__)
RUN_INFO = ".score-run.json"
HISTOGRAM = "histogram"


def scores_schema(
    kept: pa.Schema, *, top_k: int = 0, error_map: bool = False, latent_distance: bool = True
) -> pa.Schema:
    """Schema of ``scores/``: the kept input columns, then the score columns."""
    return pa.schema(
        list(kept) + score_fields(top_k=top_k, error_map=error_map, latent_distance=latent_distance)
    )


class _Loaded:
    """Holder for the shared scorer (``Shared`` needs a weak-referenceable object)."""

    def __init__(self, scorer, names):
        self.scorer = scorer
        self.names = names


class _ScoreFn(beam.DoFn):
    """Scores ``ValidRows`` with the model, loaded once per worker process."""

    def __init__(
        self, model_dir: str, version: str, schema: pa.Schema, threshold: float, top_k: int, error_map: bool
    ):
        self._model_dir = model_dir
        self._version = version
        self._schema = schema
        self._threshold = threshold
        self._top_k = top_k
        self._error_map = error_map
        self._shared = shared.Shared()
        self._scored = beam.metrics.Metrics.counter("autoenc", "rows_scored")
        self._anomalies = beam.metrics.Metrics.counter("autoenc", "anomalies")

    def setup(self):
        def load():
            artifact = artifacts.load_artifact(self._model_dir, version=self._version)
            names = [f.name for f in artifact.metadata.spec.features]
            return _Loaded(
                artifact.scorer(self._threshold, top_k=self._top_k, error_map=self._error_map), names
            )

        tag = f"{self._model_dir}@{self._version}>{self._threshold!r},{self._top_k},{self._error_map}"
        loaded = self._shared.acquire(load, tag=tag)
        self._scorer = loaded.scorer
        self._names = loaded.names

    def process(self, valid):
        scores = self._scorer.score(valid.features)
        n = len(scores.latent)
        anomalies = int(scores.is_anomaly.sum())
        self._scored.inc(n)
        self._anomalies.inc(anomalies)
        yield beam.pvalue.TaggedOutput(transforms.COUNTS, ("scored", n))
        yield beam.pvalue.TaggedOutput(transforms.COUNTS, ("anomalies", anomalies))
        yield beam.pvalue.TaggedOutput(transforms.COUNTS, ("extreme", int(scores.extreme.sum())))
        yield beam.pvalue.TaggedOutput(
            HISTOGRAM, error_histogram(scores.reconstruction_error, self._scorer.quantiles)
        )
        yield (
            valid.key,
            pa.Table.from_arrays(
                list(valid.columns.columns) + score_columns(scores, self._names), schema=self._schema
            ),
        )


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
    quantiles = artifact.metadata.validation_error_quantiles
    check_threshold_options(opt)
    if opt.threshold is not None:
        return float(opt.threshold), {"method": "fixed", "set_at": "scoring"}
    if opt.contamination is not None:
        value = threshold_from_quantiles(quantiles, opt.contamination)
        return value, {"method": "contamination", "contamination": opt.contamination, "set_at": "scoring"}
    return artifact.metadata.threshold, {**artifact.metadata.threshold_method, "set_at": "training"}


SUMMARY = "summary.json"
OUTPUTS = ("scores", "rejected")


def run(argv=None, save_main_session=False) -> dict:
    """Runs the scoring job. Returns the summary (also written to summary.json).

    Args:
        argv: command-line arguments (without the program name).
        save_main_session: pickle the main session for remote workers.
    """
    options = parse(argv, save_main_session=save_main_session)
    inp = options.view_as(InputOptions)
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
    # First the output's lock, then (also when this run fails later) nothing
    # claims --output holds a finished result until this run succeeds.
    with outputs.OutputRun(opt.output, markers=(SUMMARY,)) as out:
        summary = _score(options, inp, opt, train_opt, out)
    if summary["drift"]["warning"]:
        message = (
            f"autoenc score: WARNING: this run's reconstruction errors differ from the model's "
            f"validation errors ({summary['drift']['warning']}): the data may have drifted and the model "
            f"({summary['model']['version']}) may be stale. See 'drift' in summary.json."
        )
        _log.warning(message)
        print(message, file=sys.stderr)
    return summary


def _score(options, inp, opt, train_opt, out) -> dict:
    started = time.time()
    artifact = artifacts.load_artifact(inp.model_dir, version=opt.model_version)
    threshold, threshold_method = resolve_threshold(artifact, train_opt)
    quantiles = artifact.metadata.validation_error_quantiles
    spec = artifact.metadata.spec
    plan = io.plan_input(inp.input, inp.format)
    keep = tuple(plan.schema.names) if opt.passthrough else spec.key_columns
    check_compatible(spec, plan.schema, source=plan.files[0].path, model=artifact.path, copied=keep)
    # Only the columns the job needs are read: the features and the kept ones.
    schema = io.model_schema(plan.project(set(keep) | set(spec.names)), spec, plan.fmt)
    top_k = min(opt.explain_top_k, spec.n_features)
    out_schema = scores_schema(
        pa.schema([schema.field(name) for name in keep]),
        top_k=top_k,
        error_map=opt.error_map,
        latent_distance=artifact.metadata.latent_distribution is not None,
    )
    print(
        f"autoenc score: {len(plan.files)} file(s) with model version {artifact.version} "
        f"on {runner_name(options)}",
        file=sys.stderr,
    )
    if artifact.metadata.latent_distribution is None:
        print(
            f"autoenc score: model version {artifact.version} was written before autoenc stored "
            "the latent distribution; scores/ has no latent_distance column (retrain to get it).",
            file=sys.stderr,
        )

    info_path = out.attempt(RUN_INFO)
    with beam.Pipeline(options=options) as p:
        chunks = p | "ReadRecords" >> io.ReadRecords(
            plan,
            schema=schema,
            spec=spec,
            batch_rows=inp.read_batch_rows,
            batch_bytes=inp.read_batch_bytes,
        )
        checked = chunks | "Validate" >> transforms.Validate(spec, keep_columns=keep)
        checked[transforms.REJECTED] | "WriteRejected" >> io.WriteParquet(
            out.attempt("rejected"), rejected_schema(schema)
        )
        scored = checked.valid | "Score" >> beam.ParDo(
            _ScoreFn(inp.model_dir, artifact.version, out_schema, threshold, top_k, opt.error_map)
        ).with_outputs(transforms.COUNTS, HISTOGRAM, main="scores")
        scored.scores | "WriteScores" >> io.WriteParquet(out.attempt("scores"), out_schema)
        (
            [checked[transforms.COUNTS], scored[transforms.COUNTS]]
            | "AllCounts" >> beam.Flatten()
            | "WriteRunInfo"
            >> transforms.WriteRunInfo(
                info_path,
                histogram=scored[HISTOGRAM]
                | "SumHistograms" >> beam.CombineGlobally(_SumHistograms(len(quantiles) + 1)),
            )
        )

    info = transforms.read_run_info(info_path)
    counts = {k: info["counts"].get(k, 0) for k in ("read", "scored", "rejected", "anomalies", "extreme")}
    io.ensure_schema_file(out.attempt("scores"), out_schema)
    io.ensure_schema_file(out.attempt("rejected"), rejected_schema(schema))
    written = {name: io.footer_rows(out.attempt(name)) for name in OUTPUTS}
    reconciliation = transforms.reconcile(
        declared=plan.expected_rows,
        counts=counts,
        outcomes=("scored", "rejected"),
        written={
            "scored": sum(rows for _, rows in written["scores"]),
            "rejected": sum(rows for _, rows in written["rejected"]),
        },
    )
    if not reconciliation["reconciled"]:
        raise transforms.reconciliation_error(reconciliation, opt.output)
    ignored = {
        k.removeprefix(transforms.UNKNOWN_FEATURE): v
        for k, v in info["counts"].items()
        if k.startswith(transforms.UNKNOWN_FEATURE)
    }
    out.commit(OUTPUTS)
    shift = drift(
        np.asarray(info["histogram"], dtype=np.int64),
        quantiles,
        max_ks=opt.drift_max_ks,
        max_median_ratio=opt.drift_max_median_ratio,
    )
    summary = {
        "run_id": out.run_id,
        "counts": counts,
        "reconciled": reconciliation["reconciled"],
        "reconciliation": reconciliation["checks"],
        "threshold": {"value": threshold, **threshold_method},
        "drift": shift,
        "model": {"dir": inp.model_dir, "version": artifact.version},
        "input": plan.describe(),
        **({"ignored_tfrecord_features": ignored} if ignored else {}),
        "runner": runner_name(options),
        "outputs": {
            name: {
                "dir": artifacts.join(opt.output, name),
                "files": [{"name": file, "rows": rows} for file, rows in written[name]],
            }
            for name in OUTPUTS
        },
        "wall_time_s": round(time.time() - started, 3),
        "finished_at": artifacts.utc_now(),
    }
    summary_path = out.finish(SUMMARY, json.dumps(summary, indent=2).encode())
    extreme = (
        f", {counts['extreme']} of them beyond the model's float32 range (error +inf)"
        if counts["extreme"]
        else ""
    )
    print(
        f"autoenc score: read {counts['read']} rows: {counts['scored']} scored "
        f"({counts['anomalies']} anomalies above threshold {threshold:.6g}, {threshold_method['method']}"
        f"{extreme}), {counts['rejected']} rejected, in {summary['wall_time_s']:.1f} s.\n"
        f"  scores:   {summary['outputs']['scores']['dir']}/\n"
        f"  rejected: {summary['outputs']['rejected']['dir']}/\n"
        f"  summary:  {summary_path}",
        file=sys.stderr,
    )
    if ignored:
        print(
            "autoenc score: WARNING: TFRecord features not in the schema inferred at launch were not "
            f"read: {', '.join(f'{k} ({v} records)' for k, v in sorted(ignored.items()))}.",
            file=sys.stderr,
        )
    return summary


def main(argv=None):
    from pipelines.cli import run_command

    return run_command(run, sys.argv[1:] if argv is None else argv, "score")


if __name__ == "__main__":
    sys.exit(main())
