"""Scoring and training speed and memory, beside the practical limit and the peers.

One command generates its own data, runs every measurement in a child process
(so each gets a fresh interpreter and its own peak memory), and prints one table
of rows/s, peak RSS and ratios, with each target met or missed:

* scoring, for the 4-feature article model and a 64-feature model
  (64 -> 128 -> 64 -> 8 -> 64 -> 128 -> 64), without and with ``--passthrough``:
  ``autoenc score`` end to end on the DirectRunner (its defaults), beside
  (a) a plain single-process loop: pyarrow read -> the same normalization and
  model call -> pyarrow write of the same columns; (b) Beam's idiomatic
  ``ReadFromParquet`` -> numpy per row -> ``RunInference(TFModelHandlerNumpy)``
  -> dict per row -> ``WriteToParquet``, run on two smaller inputs (it is slow)
  and compared at the same number of rows through its measured fixed and per-row
  costs (its time is linear in rows);
  (c) PyOD's ``AutoEncoder.decision_function`` on the same rows in memory.
  Targets: autoenc >= 1.0x (a) and >= 50x (b). Without ``--passthrough``, also
  ``autoenc score`` on the same rows written as ``tf.train.Example`` records in
  TFRecord files, plain and GZIP: rows/s and the ratio to the Parquet input.
  Target: >= 0.5x.
* memory: peak RSS of ``autoenc score`` on ``--rows`` and on ``--memory_rows``
  rows of the 64-feature data. Target: within 20% of each other.
* training: samples/s of ``autoenc train``'s fit (per-epoch wall time from the
  artifact's history, first epoch excluded) beside Keras ``fit`` on the same rows
  as an in-memory numpy array at the same batch size and validation; autoenc
  with its in-memory cache and streaming from the staged files (cache off).
  Target: >= 0.9x. Also PyOD AutoEncoder's fit time on the same rows and epochs.

Timings are wall time of the whole child process (interpreter start, imports
and model load included) for scoring, so every method pays the same fixed
costs. Peak RSS is the largest sum of resident memory over the child's
process tree, sampled every 50 ms (shared pages are counted once per process).

Needs ``pip install -e '.[bench]'`` (psutil, tensorflow-hub for Beam's
TensorFlow model handler); PyOD rows need ``pip install -r
benchmarks/requirements-pyod.txt`` (PyOD and PyTorch, a download of a few GB)
and are skipped without them.

Usage:
    python benchmarks/perf.py --out perf-out                 # about 15 minutes on 2 cores
    python benchmarks/perf.py --quick --out perf-quick       # a smoke run (CI)
    python benchmarks/perf.py --rows 200000 --memory_rows 2000000 --score_args='--direct_num_workers=1'
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WIDE_FEATURES = 64
WIDE_HIDDEN = (128, 64)
WIDE_LATENT = 8
ROW_GROUP_ROWS = 131_072
READ_BATCH_ROWS = 65_536


# ----------------------------------------------------------------------------- data


def _features(kind: str, n: int, rng) -> dict:
    if kind == "article":
        from autoenc.datasets import FEATURES, article_features

        x = article_features(rng.uniform(-5.0, 5.0, n))
        return {name: x[:, j] for j, name in enumerate(FEATURES)}
    mixing = np.random.default_rng(12345).normal(size=(WIDE_LATENT, WIDE_FEATURES))
    x = rng.normal(size=(n, WIDE_LATENT)) @ mixing + 0.1 * rng.normal(size=(n, WIDE_FEATURES))
    return {f"f{j:02d}": x[:, j].astype(np.float32) for j in range(WIDE_FEATURES)}


def generate(directory: str, kind: str, rows: int, files: int, seed: int) -> str:
    """Writes ``rows`` rows of ``kind`` data as ``files`` Parquet files; returns the glob."""
    os.makedirs(directory, exist_ok=True)
    pattern = os.path.join(directory, "*.parquet")
    marker = os.path.join(directory, ".complete")
    if os.path.exists(marker):
        return pattern
    rng = np.random.default_rng(seed)
    per_file = math.ceil(rows / files)
    row = 0
    for i in range(files):
        n_file = min(per_file, rows - row)
        if n_file <= 0:
            break
        writer = None
        for start in range(0, n_file, ROW_GROUP_ROWS):
            n = min(ROW_GROUP_ROWS, n_file - start)
            columns = {"id": np.arange(row, row + n, dtype=np.int64)}
            columns.update(_features(kind, n, rng))
            table = pa.table(columns)
            if writer is None:
                writer = pq.ParquetWriter(os.path.join(directory, f"part-{i:03d}.parquet"), table.schema)
            writer.write_table(table)
            row += n
        writer.close()
    open(marker, "w").close()
    return pattern


def generate_tfrecord(parquet_pattern: str, directory: str) -> tuple[str, str]:
    """Writes the rows of ``parquet_pattern`` as ``tf.train.Example`` records,
    a plain and a GZIP TFRecord file per Parquet file: integers as int64_list,
    floats as float_list, one value per feature. Returns the two globs."""
    import gzip

    from tensorflow.core.example import example_pb2

    from autoenc.tfrecord import frame

    os.makedirs(directory, exist_ok=True)
    patterns = os.path.join(directory, "*.tfrecord"), os.path.join(directory, "*.tfrecord.gz")
    marker = os.path.join(directory, ".complete")
    if os.path.exists(marker):
        return patterns
    for path in sorted(glob.glob(parquet_pattern)):
        stem = os.path.join(directory, os.path.basename(path).removesuffix(".parquet"))
        with (
            open(f"{stem}.tfrecord", "wb") as plain,
            gzip.GzipFile(f"{stem}.tfrecord.gz", mode="wb", mtime=0) as compressed,
        ):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=READ_BATCH_ROWS):
                columns = [
                    (n, pa.types.is_integer(batch.schema.field(n).type), batch.column(n).to_pylist())
                    for n in batch.schema.names
                ]
                frames = []
                for i in range(batch.num_rows):
                    example = example_pb2.Example()
                    feature = example.features.feature
                    for n, is_int, values in columns:
                        (feature[n].int64_list if is_int else feature[n].float_list).value.append(values[i])
                    frames.append(frame(example.SerializeToString()))
                data = b"".join(frames)
                plain.write(data)
                compressed.write(data)
    open(marker, "w").close()
    return patterns


def load_rows(pattern: str, names, dtype=np.float32) -> np.ndarray:
    parts = []
    for path in sorted(glob.glob(pattern)):
        table = pq.read_table(path, columns=list(names))
        parts.append(np.column_stack([table.column(n).to_numpy() for n in names]).astype(dtype))
    return np.concatenate(parts)


# ----------------------------------------------------------------------------- measuring


def measure(cmd: list[str], log: str, env: dict | None = None) -> tuple[float, int, str]:
    """Runs ``cmd``; returns (wall seconds, peak RSS bytes of its process tree, stdout)."""
    import psutil

    started = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=err, cwd=ROOT, env={**os.environ, **(env or {})}, text=True
        )
        root = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            peak = max(peak, total)
            time.sleep(0.05)
        out = proc.stdout.read()
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        with open(log) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"{shlex.join(cmd)} failed (exit {proc.returncode}); log {log}:\n{tail}")
    return elapsed, peak, out


def me(*args: str) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), *args]


def measure_scoring(command: list[str], pattern: str, model_dir: str, output: str, *extra: str):
    """``measure`` of a scoring command (autoenc or a peer) given its input, model
    and output; the log goes beside the output."""
    os.makedirs(os.path.dirname(output), exist_ok=True)
    return measure(
        [*command, "--input", pattern, "--model_dir", model_dir, "--output", output, *extra], f"{output}.log"
    )


def scored_rows(output: str) -> int:
    """Rows an ``autoenc score`` run scored, from its summary.json."""
    with open(os.path.join(output, "summary.json")) as f:
        return json.load(f)["counts"]["scored"]


def pipeline_seconds(output: str) -> float:
    """Seconds an ``autoenc score`` run took from planning the job to its
    summary (interpreter start, imports and option checks excluded), from its
    summary.json."""
    with open(os.path.join(output, "summary.json")) as f:
        return json.load(f)["wall_time_s"]


def autoenc_cmd(job: str, *args: str, cache_off: bool = False) -> list[str]:
    if cache_off:
        # The streaming path, as for data larger than the in-memory cache limit.
        code = (
            "import sys, autoenc.training as t; t.CACHE_LIMIT_BYTES = 0; "
            "from autoenc_beam.cli import main; sys.exit(main(sys.argv[1:]))"
        )
        return [sys.executable, "-c", code, job, *args]
    return [sys.executable, "-m", "autoenc_beam.cli", job, *args]


# ----------------------------------------------------------------------------- children


def child_plain(args) -> None:
    """(a): one process, pyarrow read -> normalization + model call -> pyarrow write,
    the same columns as ``autoenc score``'s defaults."""
    from autoenc import artifact as artifacts
    from autoenc.scoring import score_columns, score_fields

    art = artifacts.load_artifact(args.model_dir)
    spec = art.metadata.spec
    top_k = min(3, spec.n_features)  # autoenc score's default --explain_top_k
    scorer = art.scorer(top_k=top_k)
    names = [f.name for f in spec.features]
    os.makedirs(args.output, exist_ok=True)
    rows = 0
    for i, path in enumerate(sorted(glob.glob(args.input))):
        pf = pq.ParquetFile(path)
        keep = pf.schema_arrow.names if args.passthrough else list(spec.key_columns)
        extra = dict(combined=art.metadata.combined_score, total=art.metadata.total_distance)
        schema = pa.schema([pf.schema_arrow.field(n) for n in keep] + score_fields(top_k=top_k, **extra))
        # The rule of pipelines.io.dictionary_columns (not imported: (a) stays Beam-free).
        not_float = [f.name for f in schema if not pa.types.is_floating(f.type) and f.name != "latent"]
        with pq.ParquetWriter(
            os.path.join(args.output, f"part-{i:05d}.parquet"),
            schema,
            compression="snappy",
            use_dictionary=not_float,
        ) as writer:
            for batch in pf.iter_batches(batch_size=READ_BATCH_ROWS):
                x = np.column_stack([batch.column(n).to_numpy() for n in spec.names]).astype(np.float64)
                scores = scorer.score(x)
                columns = [batch.column(name) for name in keep] + score_columns(scores, names)
                writer.write_table(pa.Table.from_arrays(columns, schema=schema))
                rows += len(scores.latent)
    print(json.dumps({"rows": rows}))


def child_runinference(args) -> None:
    """(b): Beam's idiomatic path, a dict per row and RunInference(TFModelHandlerNumpy)."""
    import apache_beam as beam
    from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference
    from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerNumpy

    from autoenc import artifact as artifacts
    from autoenc.models import scoring_model

    art = artifacts.load_artifact(args.model_dir)
    spec = art.metadata.spec
    model_path = os.path.join(args.output, "scoring_model.keras")
    os.makedirs(args.output, exist_ok=True)
    scoring_model(art.model).save(model_path)
    names = list(spec.names)
    mean = art.metadata.normalization.mean
    scale = art.metadata.normalization.scale
    threshold = art.metadata.threshold
    schema = pq.read_schema(sorted(glob.glob(args.input))[0])
    keep = schema.names if args.passthrough else list(spec.key_columns)
    out_schema = pa.schema(
        [schema.field(n) for n in keep]
        + [
            pa.field("latent", pa.list_(pa.float32())),
            pa.field("reconstruction_error", pa.float64()),
            pa.field("is_anomaly", pa.bool_()),
        ]
    )

    def to_example(row):
        x = ((np.array([row[n] for n in names], dtype=np.float64) - mean) / scale).astype(np.float32)
        return row, x

    def inference_fn(model, batch, inference_args=None, model_id=None):
        latent, reconstruction = model(np.stack(batch), training=False)
        return [
            PredictionResult(x, (lat, rec), model_id)
            for x, lat, rec in zip(batch, latent.numpy(), reconstruction.numpy(), strict=True)
        ]

    def to_dict(keyed):
        row, result = keyed
        latent, reconstruction = result.inference
        error = float(np.mean((reconstruction.astype(np.float64) - result.example) ** 2))
        out = {name: row[name] for name in keep}
        out.update(latent=latent.tolist(), reconstruction_error=error, is_anomaly=error > threshold)
        return out

    handler = KeyedModelHandler(TFModelHandlerNumpy(model_path, inference_fn=inference_fn))
    with beam.Pipeline(argv=["--runner=DirectRunner"]) as p:
        (
            p
            | beam.io.ReadFromParquet(args.input)
            | "ToNumpy" >> beam.Map(to_example)
            | RunInference(handler)
            | "ToDict" >> beam.Map(to_dict)
            | beam.io.WriteToParquet(
                os.path.join(args.output, "part"), out_schema, file_name_suffix=".parquet"
            )
        )
    rows = sum(
        pq.ParquetFile(f).metadata.num_rows for f in glob.glob(os.path.join(args.output, "part*.parquet"))
    )
    print(json.dumps({"rows": rows}))


def child_beam_api(args) -> None:
    """(d) and (e): a user's own Beam pipeline with autoenc's public parts:
    ReadFromParquetBatched -> RunInference(AutoencoderModelHandler) (``--api
    handler``) or -> Score (``--api transform``) -> WriteToParquetBatched, the
    same columns as ``autoenc score``'s defaults."""
    import apache_beam as beam

    from autoenc import artifact as artifacts
    from autoenc.scoring import score_fields
    from autoenc_beam import Score

    art = artifacts.load_artifact(args.model_dir)
    spec = art.metadata.spec
    keep = list(spec.key_columns)
    schema = pq.read_schema(sorted(glob.glob(args.input))[0])
    extra = dict(combined=art.metadata.combined_score, total=art.metadata.total_distance)
    out_schema = pa.schema(
        [schema.field(n) for n in keep] + score_fields(top_k=min(3, spec.n_features), **extra)
    )
    os.makedirs(args.output, exist_ok=True)

    def with_keys(result):
        batch, scores = result.example, result.inference
        return pa.Table.from_arrays([batch.column(n) for n in keep] + scores.columns, schema=out_schema)

    with beam.Pipeline(argv=["--runner=DirectRunner"]) as p:
        batches = p | beam.io.ReadFromParquetBatched(args.input, columns=keep + list(spec.names))
        if args.api == "handler":
            # Only here: Beam's RunInference module imports PyTorch where it
            # is installed, which (e) and autoenc score do without.
            from apache_beam.ml.inference.base import RunInference

            from autoenc_beam import AutoencoderModelHandler

            handler = AutoencoderModelHandler(args.model_dir, explain_top_k=3)
            tables = batches | RunInference(handler) | "WithKeys" >> beam.Map(with_keys)
        else:
            tables = (batches | Score(args.model_dir, keep=keep)).scores
        tables | beam.io.WriteToParquetBatched(
            os.path.join(args.output, "part"), out_schema, file_name_suffix=".parquet"
        )
    rows = sum(
        pq.ParquetFile(f).metadata.num_rows for f in glob.glob(os.path.join(args.output, "part*.parquet"))
    )
    print(json.dumps({"rows": rows}))


def _pyod_model(hidden, epochs, batch_size):
    from pyod.models.auto_encoder import AutoEncoder

    return AutoEncoder(
        hidden_neuron_list=list(hidden),
        epoch_num=epochs,
        batch_size=batch_size,
        contamination=0.01,
        random_state=0,
        verbose=0,
    )


def child_pyod(args) -> None:
    """(c) and PyOD's fit time: fit on the training rows, decision_function on the scoring rows."""
    names = json.loads(args.names)
    hidden = json.loads(args.hidden)
    train = load_rows(args.train, names)
    clf = _pyod_model(hidden, args.epochs, args.batch_size)
    started = time.perf_counter()
    clf.fit(train)
    fit_s = time.perf_counter() - started
    x = load_rows(args.input, names) if args.input else None
    result = {"fit_s": fit_s, "train_rows": len(train)}
    if x is not None:
        started = time.perf_counter()
        scores = clf.decision_function(x)
        result.update(score_s=time.perf_counter() - started, rows=len(scores))
    print(json.dumps(result))


def child_keras_fit(args) -> None:
    """Keras fit on the training rows as an in-memory numpy array (the reference)."""
    import keras

    from autoenc.training import TrainingConfig, build_model, epoch_timer
    from autoenc.validation import validation_mask

    fields = json.loads(args.config)
    fields["hidden_units"] = tuple(fields["hidden_units"])
    config = TrainingConfig(**fields)
    names = json.loads(args.names)
    train, val = [], []
    for path in sorted(glob.glob(args.input)):
        table = pq.read_table(path, columns=names)
        x = np.column_stack([table.column(n).to_numpy() for n in names]).astype(np.float64)
        # The file's name as autoenc train's position split sees it: its path
        # below the glob's directory (autoenc_beam.train.position_names).
        name = os.path.relpath(path, os.path.dirname(args.input))
        to_val = validation_mask(
            name, np.arange(len(x)), seed=config.seed, fraction=config.validation_fraction
        )
        train.append(x[~to_val])
        val.append(x[to_val])
    train, val = np.concatenate(train), np.concatenate(val)
    mean, scale = train.mean(0), train.std(0)
    xt = ((train - mean) / scale).astype(np.float32)
    xv = ((val - mean) / scale).astype(np.float32)
    model = build_model(config, len(names), seed=config.seed)
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=config.keras_loss)
    timer = epoch_timer()

    model.fit(
        xt,
        xt,
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation_data=(xv, xv),
        validation_batch_size=max(config.batch_size, 4096),
        shuffle=True,
        verbose=0,
        callbacks=[timer],
    )
    print(json.dumps({"train_rows": len(xt), "epoch_seconds": timer.seconds}))


CHILDREN = {
    "_plain": child_plain,
    "_runinference": child_runinference,
    "_beam_api": child_beam_api,
    "_pyod": child_pyod,
    "_keras_fit": child_keras_fit,
}


def child_main(argv) -> None:
    parser = argparse.ArgumentParser()
    for name in ("--input", "--model_dir", "--output", "--train", "--names", "--hidden", "--config"):
        parser.add_argument(name)
    parser.add_argument("--passthrough", action="store_true")
    parser.add_argument("--api", choices=("handler", "transform"), default="handler")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=256)
    args = parser.parse_args(argv[1:])
    CHILDREN[argv[0]](args)


# ----------------------------------------------------------------------------- the run


def have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


class Table:
    def __init__(self):
        self.rows = []

    def add(self, section, case, method, rows=None, seconds=None, rss=None, ratio=None, target=None, note=""):
        rate = rows / seconds if rows and seconds else None
        met = None
        if target is not None and ratio is not None:
            met = ratio >= target[1] if target[0] == ">=" else ratio <= target[1]
        self.rows.append(
            dict(
                section=section,
                case=case,
                method=method,
                rows=rows,
                seconds=seconds,
                rows_per_s=rate,
                peak_rss_mib=rss / 2**20 if rss else None,
                ratio=ratio,
                target=f"{target[0]} {target[1]}" if target else "",
                met=met,
                note=note,
            )
        )
        print(f"  {section} | {case} | {method}: " + _fmt_row(self.rows[-1]), file=sys.stderr, flush=True)
        return rate

    def print(self):
        head = [
            "section",
            "case",
            "method",
            "rows",
            "s",
            "rows/s",
            "peak RSS MiB",
            "ratio",
            "target",
            "met",
            "note",
        ]
        lines = [head]
        for r in self.rows:
            lines.append(
                [
                    r["section"],
                    r["case"],
                    r["method"],
                    f"{r['rows']:,}" if r["rows"] else "",
                    f"{r['seconds']:.1f}" if r["seconds"] else "",
                    f"{r['rows_per_s']:,.0f}" if r["rows_per_s"] else "",
                    f"{r['peak_rss_mib']:,.0f}" if r["peak_rss_mib"] else "",
                    f"{r['ratio']:.2f}" if r["ratio"] is not None else "",
                    r["target"],
                    {True: "met", False: "MISSED", None: ""}[r["met"]],
                    r["note"],
                ]
            )
        widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
        for k, line in enumerate(lines):
            print(" | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
            if k == 0:
                print("-|-".join("-" * w for w in widths))


def _fmt_row(r) -> str:
    parts = []
    if r["rows_per_s"]:
        parts.append(f"{r['rows_per_s']:,.0f} rows/s")
    if r["seconds"]:
        parts.append(f"{r['seconds']:.1f} s")
    if r["peak_rss_mib"]:
        parts.append(f"{r['peak_rss_mib']:,.0f} MiB")
    if r["ratio"] is not None:
        parts.append(f"ratio {r['ratio']:.2f}")
    if r["note"]:
        parts.append(r["note"])
    return ", ".join(parts)


def cluster_scoring(out, args, model_dir, table) -> None:
    """Scores ``--cluster_rows`` rows of the 64-feature data on the DirectRunner
    (its defaults), on a local Flink 1.19 session cluster (a JobManager and two
    TaskManagers of 2 slots) and on a local Spark 3.5 standalone cluster (a
    master and two workers of one core), parallelism 2, SDK workers started by
    each TaskManager / executor (PROCESS): rows/s and the ratio to Direct, in
    one run. Cluster start-up is not timed; job submission and the engines'
    own start-up are."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from clusters import FlinkCluster, SparkCluster

    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "autoenc")

    def jar(runner):
        found = sorted(glob.glob(os.path.join(cache, "job-servers", f"autoenc-{runner}-job-server-*.jar")))
        if not found:
            sys.exit(f"no {runner} job-server jar in {cache}/job-servers: run runners/build-job-servers")
        return found[-1]

    boot = os.path.join(cache, "boot-2.77.0", "container")
    process = ["--environment_type=PROCESS", "--environment_config=" + json.dumps({"command": boot})]
    data = generate(os.path.join(out, "data", f"wide-{args.cluster_rows}"), "wide", args.cluster_rows, 8, 5)
    direct_rate = None

    def run(engine: str, extra: list[str]) -> None:
        nonlocal direct_rate
        output = os.path.join(out, "scores", f"cluster-{engine}")
        seconds, rss, _ = measure_scoring(autoenc_cmd("score"), data, model_dir, output, *extra)
        rows = scored_rows(output)
        rate = rows / seconds
        if engine == "DirectRunner":
            direct_rate = rate
        table.add(
            "clusters",
            "64 features",
            f"autoenc score on {engine}",
            rows=rows,
            seconds=seconds,
            rss=rss if engine == "DirectRunner" else None,
            ratio=rate / direct_rate,
            note="vs the DirectRunner" if engine != "DirectRunner" else "the reference",
        )

    run("DirectRunner", [])
    with FlinkCluster(os.path.join(cache, "flink-1.19.3"), os.path.join(out, "flink")) as flink:
        run(
            "Flink 1.19 session cluster, 2 TaskManagers",
            [
                "--runner=FlinkRunner",
                f"--flink_job_server_jar={jar('flink')}",
                "--flink_version=1.19",
                f"--flink_master={flink.master}",
                "--parallelism=2",
                *process,
            ],
        )
    with SparkCluster(os.path.join(cache, "spark-3.5.0", "pyspark"), os.path.join(out, "spark")) as spark:
        run(
            "Spark 3.5 standalone cluster, 2 workers",
            [
                "--runner=SparkRunner",
                f"--spark_job_server_jar={jar('spark')}",
                f"--spark_master_url={spark.master}",
                "--parallelism=2",
                *process,
            ],
        )


def train_model(out, kind, train_pattern, args, *, epochs, cache_off=False, tag="") -> dict:
    model_dir = os.path.join(out, "models", f"{kind}{tag}")
    common = ["--input", train_pattern, "--model_dir", model_dir, "--key_columns", "id"]
    common += ["--epochs", str(epochs), "--patience", "1000", "--init", "random", "--n_init", "1"]
    if kind == "wide":
        common += ["--hidden_units", ",".join(map(str, WIDE_HIDDEN)), "--latent_dim", str(WIDE_LATENT)]
        common += ["--batch_size", str(args.batch_size)]
    else:
        common += ["--latent_dim", "1"]
    seconds, rss, _ = measure(
        autoenc_cmd("train", *common, cache_off=cache_off), os.path.join(out, f"train-{kind}{tag}.log")
    )
    from autoenc import artifact as artifacts

    art = artifacts.load_artifact(model_dir)
    return {"dir": model_dir, "meta": art.metadata, "seconds": seconds, "rss": rss}


def fit_rate(n_rows: int, epoch_seconds) -> float:
    """Rows/s of an epoch, the first (tracing, cache filling) excluded."""
    later = epoch_seconds[1:] or epoch_seconds
    return n_rows / float(np.median(later))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="Working directory (data, models, outputs, perf.json).")
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows scored per case.")
    parser.add_argument(
        "--memory_rows", type=int, default=10_000_000, help="Rows of the large memory run (0: skip)."
    )
    parser.add_argument(
        "--ri_rows", type=int, default=20_000, help="Rows scored by the RunInference pipeline."
    )
    parser.add_argument("--train_rows", type=int, default=200_000, help="Rows of the training data.")
    parser.add_argument("--epochs", type=int, default=6, help="Epochs of each training measurement.")
    parser.add_argument(
        "--batch_size", type=int, default=256, help="Batch size of the training measurements."
    )
    parser.add_argument("--files", type=int, default=4, help="Parquet files per dataset.")
    parser.add_argument("--score_args", default="", help="Extra arguments for 'autoenc score'.")
    parser.add_argument("--no_pyod", action="store_true", help="Skip PyOD even when installed.")
    parser.add_argument(
        "--sections",
        default="train,score,memory",
        help="Comma-separated parts to run: train, score, memory, clusters (not by default: "
        "needs Java and what .ci/run caches: the job-server jars, Flink, Spark, Beam's boot program).",
    )
    parser.add_argument(
        "--cluster_rows", type=int, default=10_000_000, help="Rows scored on each engine (clusters section)."
    )
    parser.add_argument("--quick", action="store_true", help="A small smoke run (sizes overridden).")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.memory_rows, args.ri_rows, args.train_rows, args.epochs, args.cluster_rows = (
            20_000,
            40_000,
            1_000,
            6_000,
            2,
            40_000,
        )
    out = args.out or tempfile.mkdtemp(prefix="autoenc-perf-")
    os.makedirs(out, exist_ok=True)
    table = Table()
    pyod = have("pyod") and have("torch") and not args.no_pyod
    ri = have("tensorflow_hub")
    started = time.time()
    print(f"perf: working in {out}", file=sys.stderr)

    sections = set(args.sections.split(","))
    data = {}
    for kind in ("article", "wide"):
        data[kind] = {
            "score": generate(
                os.path.join(out, "data", f"{kind}-{args.rows}"), kind, args.rows, args.files, 1
            ),
            "train": generate(
                os.path.join(out, "data", f"{kind}-train-{args.train_rows}"),
                kind,
                args.train_rows,
                args.files,
                2,
            ),
            "ri": generate(os.path.join(out, "data", f"{kind}-{args.ri_rows}"), kind, args.ri_rows, 1, 3),
            "ri10": generate(
                os.path.join(out, "data", f"{kind}-{10 * args.ri_rows}"), kind, 10 * args.ri_rows, 1, 3
            ),
        }
    if "score" in sections:
        for kind in ("article", "wide"):
            data[kind]["tfrecord"], data[kind]["tfrecord-gz"] = generate_tfrecord(
                data[kind]["score"], os.path.join(out, "data", f"{kind}-{args.rows}-tfrecord")
            )
    print(f"perf: data ready after {time.time() - started:.0f} s", file=sys.stderr)

    # -- training ---------------------------------------------------------------------
    section = "train"
    models = {"article": train_model(out, "article", data["article"]["train"], args, epochs=1)}
    wide = train_model(
        out, "wide", data["wide"]["train"], args, epochs=args.epochs if "train" in sections else 1
    )
    models["wide"] = wide
    if "train" in sections:
        n_train = wide["meta"].rows["train"]
        config = dict(wide["meta"].hyperparameters)
        keras_cmd = me(
            "_keras_fit",
            "--input",
            data["wide"]["train"],
            "--names",
            json.dumps(list(wide["meta"].spec.names)),
            "--config",
            json.dumps(config),
        )
        keras_seconds, keras_rss = [], 0
        for attempt in range(2):  # before and after the autoenc runs' neighbours: the machine drifts
            _, rss, keras_out = measure(keras_cmd, os.path.join(out, f"keras-fit-{attempt}.log"))
            keras_fit = json.loads(keras_out)
            keras_seconds += keras_fit["epoch_seconds"][1:]
            keras_rss = max(keras_rss, rss)
            if attempt == 0:
                stream = train_model(
                    out,
                    "wide",
                    data["wide"]["train"],
                    args,
                    epochs=args.epochs,
                    cache_off=True,
                    tag="-stream",
                )
        case = f"64 features, batch {args.batch_size}, {args.epochs} epochs"
        reference = keras_fit["train_rows"] / float(np.median(keras_seconds))
        table.add(
            section,
            case,
            "Keras fit, numpy in memory",
            rows=keras_fit["train_rows"],
            seconds=keras_fit["train_rows"] / reference,
            rss=keras_rss,
            note="per epoch (median of 2 runs, epoch 1 excluded)",
        )
        for name, run in (("autoenc train (cached)", wide), ("autoenc train (streamed)", stream)):
            rate = fit_rate(n_train, run["meta"].history["epoch_seconds"])
            table.add(
                section,
                case,
                name,
                rows=n_train,
                seconds=n_train / rate,
                rss=run["rss"],
                ratio=rate / reference,
                target=(">=", 0.9),
                note="per epoch (median, epoch 1 excluded); vs Keras numpy",
            )
        if n_train != keras_fit["train_rows"]:
            print(
                f"perf: WARNING training rows differ: autoenc {n_train}, Keras {keras_fit['train_rows']}",
                file=sys.stderr,
            )
        if pyod:
            _, rss, pout = measure(
                me(
                    "_pyod",
                    "--train",
                    data["wide"]["train"],
                    "--names",
                    json.dumps(list(wide["meta"].spec.names)),
                    "--hidden",
                    json.dumps([*WIDE_HIDDEN, WIDE_LATENT]),
                    "--epochs",
                    str(args.epochs),
                    "--batch_size",
                    str(args.batch_size),
                ),
                os.path.join(out, "pyod-fit.log"),
            )
            res = json.loads(pout)
            ours = sum(wide["meta"].history["epoch_seconds"])
            table.add(
                section,
                case,
                "PyOD AutoEncoder fit",
                rows=res["train_rows"] * args.epochs,
                seconds=res["fit_s"],
                rss=rss,
                ratio=res["fit_s"] / ours,
                note=f"whole fit, all rows (no hold-out); ratio = PyOD time / autoenc fit time {ours:.1f} s",
            )

    # -- scoring ----------------------------------------------------------------------
    score_extra = shlex.split(args.score_args)
    peak_1m = wide_1m = None
    for kind, label in (("article", "article, 4 features"), ("wide", "64 features")):
        if "score" not in sections and not (kind == "wide" and "memory" in sections):
            continue
        model_dir = models[kind]["dir"]
        for passthrough in (False, True):
            case = f"{label}{', passthrough' if passthrough else ''}"
            flag = ["--passthrough"] if passthrough else []
            tag = f"{kind}{'-pass' if passthrough else ''}"
            output = os.path.join(out, "scores", tag)
            seconds, rss, _ = measure_scoring(
                autoenc_cmd("score"), data[kind]["score"], model_dir, output, *flag, *score_extra
            )
            rows = scored_rows(output)
            ours = rows / seconds
            if kind == "wide" and not passthrough:
                peak_1m, wide_1m = rss, (rows, seconds)
            p_seconds, p_rss, p_out = measure_scoring(
                me("_plain"), data[kind]["score"], model_dir, os.path.join(out, "plain", tag), *flag
            )
            p_rows = json.loads(p_out)["rows"]
            table.add("score", case, "autoenc score (DirectRunner)", rows=rows, seconds=seconds, rss=rss)
            table.add(
                "score", case, "(a) plain pyarrow + model loop", rows=p_rows, seconds=p_seconds, rss=p_rss
            )
            table.add("score", case, "autoenc / (a)", ratio=ours / (p_rows / p_seconds), target=(">=", 1.0))
            if not passthrough and "score" in sections:
                # The same rows as tf.train.Example records, plain and GZIP.
                for gzip, name in ((False, "TFRecord"), (True, "TFRecord GZIP")):
                    t_pattern = data[kind]["tfrecord-gz" if gzip else "tfrecord"]
                    t_output = os.path.join(out, "scores", f"{tag}-{'tfrecord-gz' if gzip else 'tfrecord'}")
                    t_seconds, t_rss, _ = measure_scoring(
                        autoenc_cmd("score"), t_pattern, model_dir, t_output, *score_extra
                    )
                    t_rows = scored_rows(t_output)
                    table.add(
                        "score",
                        case,
                        f"autoenc score, {name} input",
                        rows=t_rows,
                        seconds=t_seconds,
                        rss=t_rss,
                    )
                    t_pipe, pipe = pipeline_seconds(t_output), pipeline_seconds(output)
                    table.add(
                        "score",
                        case,
                        f"{name} / Parquet",
                        ratio=(t_rows / t_seconds) / ours,
                        target=(">=", 0.5),
                        note=f"the same rows; pipelines alone (start-up excluded): {t_pipe:.1f} s vs "
                        f"{pipe:.1f} s, ratio {(t_rows / t_pipe) / (rows / pipe):.2f}",
                    )
            if not passthrough:
                # A user's own pipeline built from autoenc's public Beam parts.
                for api, name in (
                    ("handler", "(d) RunInference(AutoencoderModelHandler)"),
                    ("transform", "(e) Score transform"),
                ):
                    d_seconds, d_rss, d_out = measure_scoring(
                        me("_beam_api", "--api", api),
                        data[kind]["score"],
                        model_dir,
                        os.path.join(out, api, tag),
                    )
                    d_rows = json.loads(d_out)["rows"]
                    table.add("score", case, name, rows=d_rows, seconds=d_seconds, rss=d_rss)
                    table.add(
                        "score",
                        case,
                        f"{name[:3]} / autoenc score",
                        ratio=(d_rows / d_seconds) / ours,
                        target=(">=", 0.8),
                        note="Arrow batches as elements",
                    )
            if ri:
                # Run on two input sizes; its time is linear in rows (fixed costs +
                # a cost per row), so the time it would take on the rows autoenc
                # scored follows, and both are compared on the same rows.
                runs = []
                for key in ("ri", "ri10"):
                    r_seconds, r_rss, r_out = measure_scoring(
                        me("_runinference"), data[kind][key], model_dir, os.path.join(out, key, tag), *flag
                    )
                    runs.append((json.loads(r_out)["rows"], r_seconds, r_rss))
                (n1, t1, _), (n2, t2, r_rss) = runs
                per_row = (t2 - t1) / (n2 - n1)
                at_rows = t1 + (rows - n1) * per_row
                table.add(
                    "score",
                    case,
                    "(b) RunInference, dict per row",
                    rows=n2,
                    seconds=t2,
                    rss=r_rss,
                    note=f"{n1:,} rows in {t1:.1f} s; {1 / per_row:,.0f} rows/s between the two; on {rows:,} rows: {at_rows:.0f} s (linear)",
                )
                table.add(
                    "score",
                    case,
                    "autoenc / (b)",
                    ratio=ours / (rows / at_rows),
                    target=(">=", 50),
                    note=f"on {rows:,} rows",
                )
                table.add(
                    "score",
                    case,
                    "(a) / (b), the limit's own ratio",
                    ratio=(p_rows / p_seconds) / (rows / at_rows),
                    note=f"on {rows:,} rows",
                )
            if pyod and not passthrough:
                hidden = [*WIDE_HIDDEN, WIDE_LATENT] if kind == "wide" else [100, 100, 100, 1]
                _, c_rss, c_out = measure(
                    me(
                        "_pyod",
                        "--train",
                        data[kind]["train"],
                        "--input",
                        data[kind]["score"],
                        "--names",
                        json.dumps(list(models[kind]["meta"].spec.names)),
                        "--hidden",
                        json.dumps(hidden),
                        "--epochs",
                        "1",
                        "--batch_size",
                        str(args.batch_size),
                    ),
                    os.path.join(out, f"pyod-{tag}.log"),
                )
                res = json.loads(c_out)
                table.add(
                    "score",
                    case,
                    "(c) PyOD decision_function",
                    rows=res["rows"],
                    seconds=res["score_s"],
                    rss=c_rss,
                    note="in memory, no I/O; RSS includes its fit",
                )
                table.add("score", case, "autoenc / (c)", ratio=ours / (res["rows"] / res["score_s"]))

    # -- memory -----------------------------------------------------------------------
    if args.memory_rows and peak_1m:
        big = generate(
            os.path.join(out, "data", f"wide-{args.memory_rows}"), "wide", args.memory_rows, args.files, 4
        )
        output = os.path.join(out, "scores", "wide-big")
        seconds, rss, _ = measure_scoring(
            autoenc_cmd("score"), big, models["wide"]["dir"], output, *score_extra
        )
        rows = scored_rows(output)
        table.add(
            "memory",
            "64 features",
            f"autoenc score, {rows:,} rows",
            rows=rows,
            seconds=seconds,
            rss=rss,
            ratio=rss / peak_1m,
            target=("<=", 1.2),
            note=f"peak RSS vs {args.rows:,} rows",
        )
        n1, t1 = wide_1m
        if seconds > t1:  # on small inputs (--quick) the noise can exceed the difference
            table.add(
                "memory",
                "64 features",
                "autoenc score, rate of the difference",
                rows=rows - n1,
                seconds=seconds - t1,
                note=f"({rows:,} - {n1:,} rows) / ({seconds:.1f} - {t1:.1f} s): without fixed costs",
            )

    # -- clusters ---------------------------------------------------------------------
    if "clusters" in sections:
        cluster_scoring(out, args, models["wide"]["dir"], table)

    print(
        f"\nperf: {os.cpu_count()} CPUs, python {sys.version.split()[0]}; {time.time() - started:.0f} s in all; {out}\n"
    )
    table.print()
    with open(os.path.join(out, "perf.json"), "w") as f:
        json.dump({"args": vars(args), "rows": table.rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in CHILDREN:
        sys.path.insert(0, ROOT)
        child_main(sys.argv[1:])
    else:
        sys.exit(main())
