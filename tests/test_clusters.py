"""autoenc on real multi-process clusters on localhost: a Flink 1.19 session
cluster (a JobManager and two TaskManagers, 2 slots each) and a Spark 3.5
standalone cluster (a master and two workers), each process its own JVM, with
the job servers built from the repository's Maven projects
(``runners/build-job-servers``) and Beam's own options
(``--runner FlinkRunner --flink_job_server_jar ...``). SDK workers run outside
the launching process: each TaskManager or executor starts its own through
Beam's boot program (``--environment_type PROCESS``).

The built-in example, split over 4 files, is trained and scored with
parallelism 2 and compared with the DirectRunner: the same counts, rejected
rows, statistics and, thanks to the canonical staging, the same model bit for
bit; the same latents and errors within float tolerance and the same flags.
The clusters' REST APIs show that both TaskManagers / both workers ran tasks.
A TaskManager killed in the middle of a score job (Flink restarts the job on
the other) still ends with exactly one copy of each row.

Where the pieces come from (``.ci/run`` provides them; a test skips naming
what is missing, or fails where ``AUTOENC_REQUIRE_RUNNERS`` names it):

* job-server jars: ``AUTOENC_FLINK_JOB_SERVER_JAR`` / ``AUTOENC_SPARK_JOB_SERVER_JAR``,
  else the newest in ``~/.cache/autoenc/job-servers`` (``runners/build-job-servers``);
* Flink: ``AUTOENC_FLINK_HOME`` (``lib/`` and ``bin/bash-java-utils.jar``),
  else ``~/.cache/autoenc/flink-1.19.3`` (the ``deps/`` of PyPI's
  ``apache-flink-libraries==1.19.3``);
* Spark: ``AUTOENC_SPARK_HOME``, else ``~/.cache/autoenc/spark-3.5.0/pyspark``
  (PyPI's ``pyspark==3.5.0``);
* Beam's Python SDK boot program: ``AUTOENC_SDK_BOOT``, else
  ``~/.cache/autoenc/boot-2.77.0/container``.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clusters import FlinkCluster, SparkCluster, have_java

from autoenc_beam import demo, score, train

pytestmark = pytest.mark.runners
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "autoenc")
TRAIN_ARGS = [
    "--key_columns=id",
    "--features=x1,x2,x3,x4",
    "--latent_dim=1",
    "--hidden_units=16",
    "--epochs=2",
    "--init=random",
    "--n_init=1",
    "--read_batch_rows=1000",
]


def _required() -> list[str]:
    return [r.strip() for r in os.environ.get("AUTOENC_REQUIRE_RUNNERS", "").split(",")]


def _need(name: str, path: str | None, what: str) -> str:
    if path and os.path.exists(path) and have_java():
        return path
    reason = f"no {what} (looked at {path})" if have_java() else "no java on the PATH"
    if name in _required():
        pytest.fail(f"runner {name} is required (AUTOENC_REQUIRE_RUNNERS) but unavailable: {reason}")
    pytest.skip(f"{reason}; .ci/run shows how to provide it")


def _jar(runner: str) -> str | None:
    given = os.environ.get(f"AUTOENC_{runner.upper()}_JOB_SERVER_JAR")
    if given:
        return given
    found = sorted(
        glob.glob(os.path.join(CACHE, "job-servers", f"autoenc-{runner}-job-server-*.jar")),
        key=os.path.getmtime,
    )
    return found[-1] if found else None


def _process_environment(name: str) -> list[str]:
    boot = _need(
        name,
        os.environ.get("AUTOENC_SDK_BOOT") or os.path.join(CACHE, "boot-2.77.0", "container"),
        "Beam SDK boot program",
    )
    return ["--environment_type=PROCESS", "--environment_config=" + json.dumps({"command": boot})]


def _split(table: pa.Table, directory, parts: int = 4) -> str:
    os.makedirs(directory, exist_ok=True)
    bounds = np.linspace(0, table.num_rows, parts + 1).astype(int)
    for i in range(parts):
        pq.write_table(
            table.slice(bounds[i], bounds[i + 1] - bounds[i]), os.path.join(directory, f"part-{i}.parquet")
        )
    return os.path.join(str(directory), "*.parquet")


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The built-in example split over 4 files each, trained and scored on the
    DirectRunner as the reference."""
    root = tmp_path_factory.mktemp("clusters")
    train_path, score_path = demo.write_data(str(root / "demo"))
    train_glob = _split(pq.read_table(train_path), root / "train")
    score_glob = _split(pq.read_table(score_path), root / "score")
    model_dir = str(root / "direct-model")
    artifact = train.run([f"--input={train_glob}", f"--model_dir={model_dir}", *TRAIN_ARGS])
    output = root / "direct-output"
    summary = score.run([f"--input={score_glob}", f"--model_dir={model_dir}", f"--output={output}"])
    return {
        "root": root,
        "train": train_glob,
        "score": score_glob,
        "artifact": artifact,
        "model_dir": model_dir,
        "output": output,
        "summary": summary,
    }


def _sorted(directory, key="id") -> pa.Table:
    return pq.read_table(str(directory)).sort_by(key)


def _compare(example, runner_args: list[str], workdir) -> dict:
    """Trains and scores on the runner; checks both against the DirectRunner."""
    model_dir = str(workdir / "model")
    artifact = train.run(
        [f"--input={example['train']}", f"--model_dir={model_dir}", *TRAIN_ARGS, *runner_args]
    )
    ref = example["artifact"]
    assert artifact.metadata.rows == ref.metadata.rows
    assert artifact.metadata.input["reconciliation"] == ref.metadata.input["reconciliation"]
    # Canonical staging: the same statistics and the same model, bit for bit.
    assert artifact.metadata.input["determinism"] == ref.metadata.input["determinism"]
    np.testing.assert_array_equal(artifact.metadata.normalization.mean, ref.metadata.normalization.mean)
    for got, want in zip(artifact.model.get_weights(), ref.model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    rejected = _sorted(os.path.join(artifact.path, "rejected"))
    ref_rejected = _sorted(os.path.join(ref.path, "rejected"))
    assert rejected.select(["id", "reason"]).equals(ref_rejected.select(["id", "reason"]))

    output = workdir / "output"
    summary = score.run(
        [
            f"--input={example['score']}",
            f"--model_dir={example['model_dir']}",
            f"--output={output}",
            *runner_args,
        ]
    )
    assert summary["counts"] == example["summary"]["counts"] and summary["reconciled"]
    scores, ref_scores = _sorted(output / "scores"), _sorted(example["output"] / "scores")
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
    errors, ref_errors = (
        scores["reconstruction_error"].to_numpy(),
        ref_scores["reconstruction_error"].to_numpy(),
    )
    print(
        f"{runner_args[0]}: {summary['counts']}; largest relative error difference "
        f"{np.max(np.abs(errors - ref_errors) / np.maximum(ref_errors, 1e-12)):.3g}; "
        f"flags equal; model weights equal"
    )
    rejected, ref_rejected = _sorted(output / "rejected"), _sorted(example["output"] / "rejected")
    assert rejected.select(["id", "reason", "source_row"]).equals(
        ref_rejected.select(["id", "reason", "source_row"])
    )
    return summary


def _flink_args(cluster: FlinkCluster, jar: str) -> list[str]:
    return [
        "--runner=FlinkRunner",
        f"--flink_job_server_jar={jar}",
        "--flink_version=1.19",
        f"--flink_master={cluster.master}",
        "--parallelism=2",
        *_process_environment("flink_cluster"),
    ]


def test_flink_session_cluster_matches_the_direct_runner_and_survives_a_lost_taskmanager(example, tmp_path):
    jar = _need("flink_cluster", _jar("flink"), "Flink job-server jar")
    home = _need(
        "flink_cluster",
        os.environ.get("AUTOENC_FLINK_HOME") or os.path.join(CACHE, "flink-1.19.3"),
        "Flink distribution",
    )
    with FlinkCluster(home, str(tmp_path / "flink"), taskmanagers=2, slots=2) as cluster:
        args = _flink_args(cluster, jar)
        _compare(example, args, tmp_path)
        jobs = cluster.jobs()
        assert len(jobs) == 2 and all(j["status"] == "FINISHED" for j in jobs), jobs
        taskmanagers = {tm["id"] for tm in cluster.rest("/taskmanagers")["taskmanagers"]}
        for job in jobs:
            # Both TaskManagers ran subtasks of every job.
            assert cluster.taskmanagers_of(job["id"]) == taskmanagers, job

        # A TaskManager killed while a score job runs: Flink restarts the job on
        # the other one, and the result has every row exactly once.
        big = pa.concat_tables(
            [pq.read_table(example["score"].replace("*.parquet", f"part-{i}.parquet")) for i in range(4)] * 60
        )
        big = big.set_column(0, "id", pa.array([f"r{i:07d}" for i in range(big.num_rows)]))
        big_glob = _split(big, tmp_path / "big")
        output = tmp_path / "killed"
        argv = [f"--input={big_glob}", f"--model_dir={example['model_dir']}", f"--output={output}", *args]
        process = subprocess.Popen(
            [sys.executable, "-m", "autoenc_beam.score", *argv],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            running = [j for j in cluster.jobs() if j["status"] == "RUNNING"]
            if running:
                vertices = cluster.rest(f"/jobs/{running[0]['id']}")["vertices"]
                if any(v["status"] == "RUNNING" and "Score" in v["name"] for v in vertices):
                    break
            time.sleep(0.2)
        assert process.poll() is None, "the score job ended before a TaskManager could be killed"
        cluster.kill("taskmanager-1")
        _, err = process.communicate(timeout=900)
        restarted = [j for j in cluster.jobs() if j["id"] not in {x["id"] for x in jobs}]
        if process.returncode == 0:
            summary = json.loads((output / "summary.json").read_text())
            scores = pq.read_table(output / "scores")
            rejected = pq.read_table(output / "rejected")
            assert summary["reconciled"] and summary["counts"]["read"] == big.num_rows
            assert scores.num_rows + rejected.num_rows == big.num_rows
            assert len(set(scores["id"].to_pylist()) | set(rejected["id"].to_pylist())) == big.num_rows
            history = cluster.rest(f"/jobs/{restarted[0]['id']}/exceptions").get("exceptionHistory", {})
            assert history.get("entries"), "the job finished without noticing the lost TaskManager"
            print(
                f"TaskManager killed: the job restarted ({len(history['entries'])} failure(s), first: "
                f"{history['entries'][0]['exceptionName']}) and wrote {scores.num_rows} scores + "
                f"{rejected.num_rows} rejected = {big.num_rows} rows once each"
            )
        else:
            # Or it failed: with a message, and nothing claiming success.
            assert not (output / "summary.json").exists()
            assert "error" in err.decode().lower(), err.decode()[-2000:]
            print(f"TaskManager killed: the run failed with no summary.json: {err.decode()[-300:]}")


def test_spark_standalone_cluster_matches_the_direct_runner(example, tmp_path):
    jar = _need("spark_cluster", _jar("spark"), "Spark job-server jar")
    home = _need(
        "spark_cluster",
        os.environ.get("AUTOENC_SPARK_HOME") or os.path.join(CACHE, "spark-3.5.0", "pyspark"),
        "Spark installation",
    )
    with SparkCluster(home, str(tmp_path / "spark"), workers=2, cores=1) as cluster:
        args = [
            "--runner=SparkRunner",
            f"--spark_job_server_jar={jar}",
            f"--spark_master_url={cluster.master}",
            "--parallelism=2",
            *_process_environment("spark_cluster"),
        ]
        _compare(example, args, tmp_path)
        apps = [a["id"] for a in cluster.state()["completedapps"]]
        assert len(apps) == 2, apps
        by_worker = cluster.apps_by_worker()
        for app in apps:
            # Both workers ran an executor of every application.
            assert all(app in ran for ran in by_worker.values()), (app, by_worker)
