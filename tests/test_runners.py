"""The built-in example trained and scored on other runners, compared with the
DirectRunner's output: same row counts, same statistics, same rejected rows, and
the same latent vectors and errors within float tolerance.

A runner whose binary or jar is missing skips with the reason; a runner named in
the comma-separated environment variable ``AUTOENC_REQUIRE_RUNNERS`` fails
instead (CI sets it for the runners it provides).

Where the runners come from:

* ``prism``: ``AUTOENC_PRISM_BIN``, else ``prism`` on the PATH, else
  ``~/.cache/autoenc/prism-2.77.0/prism`` (``.ci/run`` builds it there with
  ``go install github.com/apache/beam/sdks/v2/go/cmd/prism@v2.77.0``);
* ``flink`` (embedded, ``[local]``): ``AUTOENC_FLINK_JOB_SERVER_JAR``, else the
  newest jar ``runners/build-job-servers`` put in ``~/.cache/autoenc/job-servers``
  (Beam 2.70's Flink 1.19 runner; the clusters: ``tests/test_clusters.py``);
* ``spark`` (embedded, ``local[2]``): ``AUTOENC_SPARK_JOB_SERVER_JAR``, else
  that cache's Spark job-server jar;
* ``external_setup_file`` (workers without autoenc): prism, plus
  ``AUTOENC_WORKER_PYTHON`` (default ``~/.cache/autoenc/worker-venv/bin/python``:
  a virtualenv with apache-beam, tensorflow, pyarrow, numpy and google-crc32c
  but not autoenc) and ``AUTOENC_SDK_BOOT`` (default
  ``~/.cache/autoenc/boot-2.77.0/container``: Beam's Python SDK boot program,
  ``go install github.com/apache/beam/sdks/v2/python/container@v2.77.0``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from autoenc.artifact import load_artifact
from autoenc_beam import demo, score, train

pytestmark = pytest.mark.runners
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BEAM_VERSION = "2.77.0"
TRAIN_ARGS = [
    "--key_columns=id",
    "--features=x1,x2,x3,x4",
    "--latent_dim=1",
    "--hidden_units=16",
    "--epochs=1",
    "--init=random",
    "--n_init=1",
]


def _unavailable(name: str, reason: str):
    if name in _required():
        pytest.fail(f"runner {name} is required (AUTOENC_REQUIRE_RUNNERS) but unavailable: {reason}")
    pytest.skip(reason)


def _built_jar(runner: str) -> str | None:
    """The newest job-server jar ``runners/build-job-servers`` put in the cache."""
    import glob

    cache = os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "autoenc", "job-servers"
    )
    found = sorted(glob.glob(os.path.join(cache, f"autoenc-{runner}-job-server-*.jar")), key=os.path.getmtime)
    return found[-1] if found else None


def _java_or_skip(name: str) -> None:
    if shutil.which("java") is None:
        _unavailable(name, "no java on the PATH")


def runner_args(name: str) -> list[str]:
    if name == "direct_one_thread":
        return ["--direct_num_workers=1"]
    if name == "direct_multi_processing":
        return ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    if name == "prism":
        prism = (
            os.environ.get("AUTOENC_PRISM_BIN")
            or shutil.which("prism")
            or os.path.expanduser(f"~/.cache/autoenc/prism-{BEAM_VERSION}/prism")
        )
        if not os.path.isfile(prism):
            _unavailable(name, f"no prism binary (looked at {prism}); see this module's docstring")
        # Beam keeps one Prism job server per process whatever the options: the
        # DirectRunner's earlier attempt to download Prism (offline) would be
        # reused, so ask for a server of our own.
        return [
            "--runner=PrismRunner",
            f"--prism_location={prism}",
            "--experiments=disable_prism_server_singleton",
        ]
    if name == "flink":
        _java_or_skip(name)
        jar = os.environ.get("AUTOENC_FLINK_JOB_SERVER_JAR") or _built_jar("flink")
        if not jar or not os.path.isfile(jar):
            _unavailable(
                name, f"no Flink job-server jar (looked at {jar}); build it with runners/build-job-servers"
            )
        return [
            "--runner=FlinkRunner",
            "--flink_master=[local]",
            "--flink_version=1.19",
            f"--flink_job_server_jar={jar}",
            "--environment_type=LOOPBACK",
        ]
    if name == "spark":
        _java_or_skip(name)
        jar = os.environ.get("AUTOENC_SPARK_JOB_SERVER_JAR") or _built_jar("spark")
        if not jar or not os.path.isfile(jar):
            _unavailable(
                name, f"no Spark job-server jar (looked at {jar}); build it with runners/build-job-servers"
            )
        return [
            "--runner=SparkRunner",
            f"--spark_job_server_jar={jar}",
            "--spark_master_url=local[2]",
            "--environment_type=LOOPBACK",
        ]
    raise ValueError(name)


def _run_both(workdir: str, extra: list[str]) -> dict:
    """Trains on the whole example (its bad rows included) and scores its scoring
    file with the reference model; returns what the comparisons need."""
    data = os.path.join(os.path.dirname(workdir), "data")
    model_dir = os.path.join(workdir, "model")
    artifact = train.run(
        [f"--input={data}/*.parquet", f"--model_dir={model_dir}", *TRAIN_ARGS, *extra],
        save_main_session=False,
    )
    return {"artifact": artifact, "model_dir": model_dir}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("runners")
    train_path, score_path = demo.write_data(str(root))
    ref = _run_both(str(root / "direct"), [])
    output = root / "direct" / "output"
    summary = score.run(
        [f"--input={score_path}", f"--model_dir={ref['model_dir']}", f"--output={output}"],
        save_main_session=False,
    )
    return {**ref, "root": root, "score_path": score_path, "output": output, "summary": summary}


def _sorted(directory, key="id"):
    table = pq.read_table(str(directory))
    return table.sort_by(key)


@pytest.mark.parametrize(
    "runner", ["direct_one_thread", "direct_multi_processing", "prism", "flink", "spark"]
)
def test_runner_matches_the_direct_runner(reference, runner):
    _compare_with_reference(reference, reference["root"] / runner, runner_args(runner))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_workers_without_autoenc_get_it_from_setup_file(reference, tmp_path):
    """SDK workers run from another virtualenv that has Beam and the third-party
    dependencies but not autoenc (an EXTERNAL worker pool whose workers start
    through Beam's container boot program, as on a cluster); the job ships
    autoenc with --setup_file, and the results match the DirectRunner's."""
    name = "external_setup_file"
    prism_args = runner_args("prism")
    python = os.environ.get("AUTOENC_WORKER_PYTHON") or os.path.expanduser(
        "~/.cache/autoenc/worker-venv/bin/python"
    )
    boot = os.environ.get("AUTOENC_SDK_BOOT") or os.path.expanduser(
        f"~/.cache/autoenc/boot-{BEAM_VERSION}/container"
    )
    for path, what in [(python, "worker virtualenv python"), (boot, "Beam Python SDK boot program")]:
        if not os.path.isfile(path):
            _unavailable(name, f"no {what} (looked at {path}); .ci/run shows how to make it")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{os.path.dirname(python)}:{env['PATH']}"
    env["RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT"] = "1"  # install into that virtualenv
    subprocess.run(
        [python, "-m", "pip", "uninstall", "-q", "-y", "autoenc"], env=env, cwd=tmp_path, check=True
    )
    probe = subprocess.run([python, "-c", "import autoenc"], env=env, cwd=tmp_path, capture_output=True)
    assert probe.returncode != 0, "the worker virtualenv must not have autoenc before the job"
    port = _free_port()
    log = open(tmp_path / "pool.log", "w")
    pool = subprocess.Popen(
        [
            python,
            "-m",
            "apache_beam.runners.worker.worker_pool_main",
            f"--service_port={port}",
            f"--container_executable={boot}",
        ],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, pool, tmp_path / "pool.log")
        extra = [
            *prism_args,
            "--environment_type=EXTERNAL",
            f"--environment_config=localhost:{port}",
            f"--setup_file={os.path.join(ROOT, 'setup.py')}",
        ]
        _compare_with_reference(reference, reference["root"] / name, extra)
    finally:
        pool.terminate()
        pool.wait(timeout=30)
        log.close()
    installed = subprocess.run(
        [python, "-c", "import autoenc, os; print(os.path.dirname(autoenc.__file__))"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert installed.startswith(os.path.dirname(os.path.dirname(python)))  # the staged copy, installed there
    assert "workflow.tar.gz" in (tmp_path / "pool.log").read_text()


def _wait_for_port(port: int, process, log, timeout: float = 120) -> None:
    """Waits until ``process`` listens on ``port`` (a job started before the worker
    pool listens fails with 'connection refused')."""
    import socket
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the worker pool exited ({process.returncode}): {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("localhost", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the worker pool did not listen on port {port} within {timeout} s")


def _required() -> list[str]:
    return [r.strip() for r in os.environ.get("AUTOENC_REQUIRE_RUNNERS", "").split(",")]


def _compare_with_reference(reference, workdir, extra):
    got = _run_both(str(workdir), extra)

    # Training's Beam stage: the same counts, statistics and rejected rows.
    ref_meta, meta = reference["artifact"].metadata, got["artifact"].metadata
    assert meta.rows == ref_meta.rows
    assert meta.rows["rejected"] == 5
    np.testing.assert_allclose(meta.normalization.mean, ref_meta.normalization.mean, rtol=1e-12)
    np.testing.assert_allclose(meta.normalization.scale, ref_meta.normalization.scale, rtol=1e-9)
    ref_rejected = _sorted(os.path.join(reference["artifact"].path, "rejected"))
    rejected = _sorted(os.path.join(got["artifact"].path, "rejected"))
    assert rejected.select(["id", "reason", "source_row"]).equals(
        ref_rejected.select(["id", "reason", "source_row"])
    )

    # Scoring with the reference model: the same rows, latents and errors.
    output = workdir / "output"
    summary = score.run(
        [
            f"--input={reference['score_path']}",
            f"--model_dir={reference['model_dir']}",
            f"--output={output}",
            *extra,
        ],
        save_main_session=False,
    )
    assert summary["counts"] == reference["summary"]["counts"]
    ref_scores, scores = _sorted(reference["output"] / "scores"), _sorted(output / "scores")
    assert scores["id"].equals(ref_scores["id"])
    np.testing.assert_allclose(
        np.stack(scores["latent"].to_numpy(zero_copy_only=False)),
        np.stack(ref_scores["latent"].to_numpy(zero_copy_only=False)),
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        scores["reconstruction_error"].to_numpy(), ref_scores["reconstruction_error"].to_numpy(), rtol=1e-5
    )
    assert scores["is_anomaly"].equals(ref_scores["is_anomaly"])
    ref_rej, rej = _sorted(reference["output"] / "rejected"), _sorted(output / "rejected")
    assert rej.select(["id", "reason", "source_row"]).equals(ref_rej.select(["id", "reason", "source_row"]))
    assert load_artifact(reference["model_dir"]).version == summary["model"]["version"]


DETERMINISM_RUNNERS = [
    "direct_one_thread",
    "direct_two_threads",
    "direct_multi_processing",
    "prism",
    "subprocess",
]


@pytest.fixture(scope="module")
def many_chunks(tmp_path_factory):
    """The example's training rows cut into 4 files of several row groups, read
    in small batches: dozens of chunks for the runners to order as they like."""
    import pyarrow.parquet as pq

    from autoenc.datasets import article_table

    root = tmp_path_factory.mktemp("determinism")
    table = article_table(4000, seed=3)
    for i in range(4):
        pq.write_table(table.slice(i * 1000, 1000), root / f"part-{i}.parquet", row_group_size=300)
    return root


def _train_on(runner: str, data, model_dir) -> list:
    argv = [
        f"--input={data}/*.parquet",
        f"--model_dir={model_dir}",
        *TRAIN_ARGS,
        "--hidden_units=16,16",
        "--epochs=4",
        "--read_batch_rows=128",
        "--seed=11",
    ]
    if runner == "subprocess":
        subprocess.run(
            [sys.executable, "-m", "autoenc_beam.train", *argv], cwd=ROOT, check=True, capture_output=True
        )
    else:
        extra = {"direct_two_threads": ["--direct_num_workers=2", "--direct_running_mode=multi_threading"]}
        train.run(argv + (extra.get(runner) or runner_args(runner)))
    return load_artifact(str(model_dir))


def test_the_same_seed_gives_bit_identical_models_on_every_runner(many_chunks, tmp_path):
    """The staged rows reach Keras in the order of their chunks in the input
    and the statistics merge in that order, so threads, processes and Prism,
    which all bundle and order the work differently, train the same model,
    bit for bit; metadata.json records what decided it."""
    models = {}
    for runner in DETERMINISM_RUNNERS:
        if runner == "prism":
            try:
                runner_args("prism")
            except pytest.skip.Exception:
                if "prism" in _required():
                    raise
                continue
        models[runner] = _train_on(runner, many_chunks, tmp_path / runner)
    reference = models.pop("direct_one_thread")
    ref_weights = reference.model.get_weights()
    ref_meta = reference.metadata
    assert ref_meta.input["determinism"]["staged_chunks"]["train"] >= 30
    for runner, artifact in models.items():
        meta = artifact.metadata
        assert meta.input["determinism"] == ref_meta.input["determinism"], runner
        np.testing.assert_array_equal(meta.normalization.mean, ref_meta.normalization.mean, err_msg=runner)
        np.testing.assert_array_equal(meta.normalization.scale, ref_meta.normalization.scale, err_msg=runner)
        for got, want in zip(artifact.model.get_weights(), ref_weights, strict=True):
            np.testing.assert_array_equal(got, want, err_msg=runner)
        assert meta.history["val_loss"] == ref_meta.history["val_loss"], runner
        assert meta.threshold == ref_meta.threshold, runner


@pytest.mark.parametrize("runner", ["prism", "flink"])
def test_categorical_vocabularies_and_model_are_the_same_on_a_portable_runner(tmp_path, runner):
    """The vocabulary pass (CombinePerKey, then one JSON file) on a portable
    runner learns the categories the in-process runner learns, and the model
    trained from them is the same, bit for bit."""
    import pyarrow as pa

    rng = np.random.default_rng(3)
    n = 1200
    a = rng.integers(0, 5, n)
    table = pa.table(
        {
            "row": np.arange(n),
            "shop": pa.array([f"shop-{v}" for v in a]),
            "channel": pa.array(rng.choice(["web", "app", "store"], n)).dictionary_encode(),
            "x": rng.normal(size=n) + a,
        }
    )
    pq.write_table(table, tmp_path / "rows.parquet", row_group_size=300)
    args = ["--key_columns=row", "--epochs=3", "--n_init=1", "--hidden_units=8", "--max_categories=4"]
    models = {}
    for name, extra in (("direct", []), (runner, runner_args(runner))):
        models[name] = train.run(
            [f"--input={tmp_path / 'rows.parquet'}", f"--model_dir={tmp_path / name}", *args, *extra],
            save_main_session=False,
        )
    direct, other = models["direct"], models[runner]
    assert other.metadata.spec == direct.metadata.spec
    assert [len(f.categories) for f in direct.metadata.spec.categorical_features] == [4, 3]
    assert other.metadata.input["categorical"] == direct.metadata.input["categorical"]
    for got, want in zip(other.model.get_weights(), direct.model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
