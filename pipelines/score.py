"""Score Parquet or TFRecord data with a trained model: latent vector,
reconstruction error and anomaly flag for every valid row.

Input: a glob of Parquet files or TFRecord files of ``tf.train.Example``, and a
model directory written by ``autoenc train``. Output under ``--output``:

* ``scores/part-*.parquet``: the key columns (every input column with
  ``--passthrough``), ``latent`` (list<float32>), ``reconstruction_error``
  (float64, mean squared error over the normalized features; higher = more
  anomalous) and ``is_anomaly`` (bool, error above the model's threshold);
* ``rejected/part-*.parquet``: rows that failed validation, with their values,
  ``reason``, ``source_file`` and ``source_row``;
* ``summary.json``: counts (read = scored + rejected), threshold, model version,
  wall time. Deleted when a run starts and written last, only when the job
  succeeded: a scheduler checks for it.

Outputs are written under ``--output/.attempt/`` and moved into place when
the job succeeded, so re-running with the same ``--output`` replaces the earlier
result with no stale, duplicate or partial shards, even after a killed run.

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
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.utils import shared

from autoenc import artifact as artifacts
from autoenc.schema import check_compatible
from autoenc.validation import rejected_schema
from pipelines import io, transforms
from pipelines.options import InputOptions, ScoreOptions, parse, require

_log = logging.getLogger(__name__)
RUN_INFO = ".score-run.json"


def scores_schema(kept: pa.Schema) -> pa.Schema:
    """Schema of ``scores/``: the kept input columns, then the score columns."""
    return pa.schema(
        list(kept)
        + [
            pa.field("latent", pa.list_(pa.float32())),
            pa.field("reconstruction_error", pa.float64()),
            pa.field("is_anomaly", pa.bool_()),
        ]
    )


class _Loaded:
    """Holder for the shared scorer (``Shared`` needs a weak-referenceable object)."""

    def __init__(self, scorer):
        self.scorer = scorer


class _ScoreFn(beam.DoFn):
    """Scores ``ValidRows`` with the model, loaded once per worker process."""

    def __init__(self, model_dir: str, version: str, schema: pa.Schema):
        self._model_dir = model_dir
        self._version = version
        self._schema = schema
        self._shared = shared.Shared()
        self._scored = beam.metrics.Metrics.counter("autoenc", "rows_scored")
        self._anomalies = beam.metrics.Metrics.counter("autoenc", "anomalies")

    def setup(self):
        def load():
            artifact = artifacts.load_artifact(self._model_dir, version=self._version)
            return _Loaded(artifact.scorer())

        self._scorer = self._shared.acquire(load, tag=f"{self._model_dir}@{self._version}").scorer

    def process(self, valid):
        scores = self._scorer.score(valid.features)
        n = len(scores.latent)
        latent = io.list_column(scores.latent)
        anomalies = int(scores.is_anomaly.sum())
        self._scored.inc(n)
        self._anomalies.inc(anomalies)
        yield beam.pvalue.TaggedOutput(transforms.COUNTS, ("scored", n))
        yield beam.pvalue.TaggedOutput(transforms.COUNTS, ("anomalies", anomalies))
        yield pa.Table.from_arrays(
            list(valid.columns.columns)
            + [latent, pa.array(scores.reconstruction_error), pa.array(scores.is_anomaly)],
            schema=self._schema,
        )


def run(argv=None, save_main_session=True) -> dict:
    """Runs the scoring job. Returns the summary (also written to summary.json).

    Args:
        argv: command-line arguments (without the program name).
        save_main_session: pickle the main session for remote workers.
    """
    options = parse(argv, save_main_session=save_main_session)
    inp = options.view_as(InputOptions)
    opt = options.view_as(ScoreOptions)
    require(opt, "output")
    # First of all (also when this run fails before writing anything): from now
    # until it succeeds, nothing claims --output holds a finished result.
    # Everything is written under the attempt directory and moved into place
    # only when the job succeeded, so a re-run with the same --output replaces
    # the earlier result cleanly, whatever a killed run left behind.
    attempt_dir = io.start_attempt(opt.output)
    started = time.time()
    artifact = artifacts.load_artifact(inp.model_dir, version=opt.model_version)
    spec = artifact.metadata.spec
    fmt, files, schema = io.resolve_input(inp.input, inp.format)
    check_compatible(spec, schema, source=files[0], model=artifact.path)
    keep = tuple(schema.names) if opt.passthrough else spec.key_columns
    out_schema = scores_schema(pa.schema([schema.field(name) for name in keep]))
    print(f"autoenc score: {len(files)} file(s) with model version {artifact.version}", file=sys.stderr)

    info_path = artifacts.join(attempt_dir, RUN_INFO)
    with beam.Pipeline(options=options) as p:
        chunks = p | "ReadRecords" >> io.ReadRecords(
            inp.input, fmt=fmt, schema=schema, spec=spec, batch_rows=inp.read_batch_rows
        )
        checked = chunks | "Validate" >> transforms.Validate(spec, keep_columns=keep)
        checked[transforms.REJECTED] | "WriteRejected" >> io.WriteParquet(
            artifacts.join(attempt_dir, "rejected"), rejected_schema(schema)
        )
        scored = checked.valid | "Score" >> beam.ParDo(
            _ScoreFn(inp.model_dir, artifact.version, out_schema)
        ).with_output_types(pa.Table).with_outputs(transforms.COUNTS, main="scores")
        scored.scores | "WriteScores" >> io.WriteParquet(artifacts.join(attempt_dir, "scores"), out_schema)
        (
            [checked[transforms.COUNTS], scored[transforms.COUNTS]]
            | "AllCounts" >> beam.Flatten()
            | "WriteRunInfo" >> transforms.WriteRunInfo(info_path)
        )

    counts = transforms.read_run_info(info_path)["counts"]
    counts = {k: counts.get(k, 0) for k in ("read", "scored", "rejected", "anomalies")}
    if counts["read"] != counts["scored"] + counts["rejected"]:
        raise RuntimeError(f"Row counts do not reconcile: {counts}. This is a bug in autoenc.")
    io.commit_attempt(opt.output, attempt_dir, ("scores", "rejected"))
    summary = {
        "counts": counts,
        "reconciled": counts["read"] == counts["scored"] + counts["rejected"],
        "threshold": {"value": artifact.metadata.threshold, **artifact.metadata.threshold_method},
        "model": {"dir": inp.model_dir, "version": artifact.version},
        "input": {"pattern": inp.input, "format": fmt, "files": len(files)},
        "outputs": {
            "scores": artifacts.join(opt.output, "scores"),
            "rejected": artifacts.join(opt.output, "rejected"),
        },
        "wall_time_s": round(time.time() - started, 3),
        "finished_at": artifacts.utc_now(),
    }
    with FileSystems.create(artifacts.join(opt.output, "summary.json")) as f:
        f.write(json.dumps(summary, indent=2).encode())
    print(
        f"autoenc score: read {counts['read']} rows: {counts['scored']} scored "
        f"({counts['anomalies']} anomalies above threshold {artifact.metadata.threshold:.6g}), "
        f"{counts['rejected']} rejected, in {summary['wall_time_s']:.1f} s.\n"
        f"  scores:   {summary['outputs']['scores']}/\n"
        f"  rejected: {summary['outputs']['rejected']}/\n"
        f"  summary:  {artifacts.join(opt.output, 'summary.json')}",
        file=sys.stderr,
    )
    return summary


def main(argv=None):
    from pipelines.cli import run_command

    return run_command(run, sys.argv[1:] if argv is None else argv, "score")


if __name__ == "__main__":
    sys.exit(main())
