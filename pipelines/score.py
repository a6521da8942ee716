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
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.utils import shared

from autoenc import artifact as artifacts
from autoenc.errors import ConfigError
from autoenc.schema import check_compatible
from autoenc.scoring import drift, error_histogram, score_columns, score_fields, threshold_from_quantiles
from autoenc.validation import rejected_schema
from pipelines import io, transforms
from pipelines.options import (
    InputOptions,
    ScoreOptions,
    TrainOptions,
    check_threshold_options,
    parse,
    require,
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
        yield beam.pvalue.TaggedOutput(
            HISTOGRAM, error_histogram(scores.reconstruction_error, self._scorer.quantiles)
        )
        yield pa.Table.from_arrays(
            list(valid.columns.columns) + score_columns(scores, self._names), schema=self._schema
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


def run(argv=None, save_main_session=True) -> dict:
    """Runs the scoring job. Returns the summary (also written to summary.json).

    Args:
        argv: command-line arguments (without the program name).
        save_main_session: pickle the main session for remote workers.
    """
    options = parse(argv, save_main_session=save_main_session, use_cores=True)
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
    train_opt = options.view_as(TrainOptions)
    for name in ("label_column", "target_fpr"):
        if getattr(train_opt, name) is not None:
            raise ConfigError(
                f"--{name} is an option of 'autoenc train' and 'autoenc evaluate', not of scoring. "
                "To keep a label column in the scores, pass --passthrough."
            )
    threshold, threshold_method = resolve_threshold(artifact, train_opt)
    quantiles = artifact.metadata.validation_error_quantiles
    spec = artifact.metadata.spec
    fmt, files, schema = io.resolve_input(inp.input, inp.format)
    check_compatible(spec, schema, source=files[0], model=artifact.path)
    keep = tuple(schema.names) if opt.passthrough else spec.key_columns
    if opt.explain_top_k < 0:
        raise ConfigError(f"--explain_top_k must be >= 0. Received: --explain_top_k={opt.explain_top_k}")
    top_k = min(opt.explain_top_k, spec.n_features)
    out_schema = scores_schema(
        pa.schema([schema.field(name) for name in keep]),
        top_k=top_k,
        error_map=opt.error_map,
        latent_distance=artifact.metadata.latent_distribution is not None,
    )
    print(f"autoenc score: {len(files)} file(s) with model version {artifact.version}", file=sys.stderr)
    if artifact.metadata.latent_distribution is None:
        print(
            f"autoenc score: model version {artifact.version} was written before autoenc stored "
            "the latent distribution; scores/ has no latent_distance column (retrain to get it).",
            file=sys.stderr,
        )

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
            _ScoreFn(inp.model_dir, artifact.version, out_schema, threshold, top_k, opt.error_map)
        ).with_output_types(pa.Table).with_outputs(transforms.COUNTS, HISTOGRAM, main="scores")
        scored.scores | "WriteScores" >> io.WriteParquet(artifacts.join(attempt_dir, "scores"), out_schema)
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
    counts = info["counts"]
    counts = {k: counts.get(k, 0) for k in ("read", "scored", "rejected", "anomalies")}
    if counts["read"] != counts["scored"] + counts["rejected"]:
        raise RuntimeError(f"Row counts do not reconcile: {counts}. This is a bug in autoenc.")
    io.commit_attempt(opt.output, attempt_dir, ("scores", "rejected"))
    shift = drift(
        np.asarray(info["histogram"], dtype=np.int64),
        quantiles,
        max_ks=opt.drift_max_ks,
        max_median_ratio=opt.drift_max_median_ratio,
    )
    summary = {
        "counts": counts,
        "reconciled": counts["read"] == counts["scored"] + counts["rejected"],
        "threshold": {"value": threshold, **threshold_method},
        "drift": shift,
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
        f"({counts['anomalies']} anomalies above threshold {threshold:.6g}, {threshold_method['method']}), "
        f"{counts['rejected']} rejected, in {summary['wall_time_s']:.1f} s.\n"
        f"  scores:   {summary['outputs']['scores']}/\n"
        f"  rejected: {summary['outputs']['rejected']}/\n"
        f"  summary:  {artifacts.join(opt.output, 'summary.json')}",
        file=sys.stderr,
    )
    if shift["warning"]:
        message = (
            f"autoenc score: WARNING: this run's reconstruction errors differ from the model's "
            f"validation errors ({shift['warning']}): the data may have drifted and the model "
            f"({artifact.version}) may be stale. See 'drift' in summary.json."
        )
        _log.warning(message)
        print(message, file=sys.stderr)
    return summary


def main(argv=None):
    from pipelines.cli import run_command

    return run_command(run, sys.argv[1:] if argv is None else argv, "score")


if __name__ == "__main__":
    sys.exit(main())
