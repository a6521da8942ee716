"""Fault injection: ``autoenc train`` and ``autoenc score`` killed with SIGKILL
at random moments, several times over. After every kill the previous model
and the previous scores are intact (or already replaced by the complete new
ones), and the rerun that follows leaves exactly one copy of each row."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import TINY_TRAIN_ARGS

from autoenc.artifact import list_versions, load_artifact
from autoenc.datasets import article_table
from autoenc_beam import score, train

pytestmark = pytest.mark.pipeline
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_and_kill(module: str, argv: list[str], delay: float) -> int | None:
    """Starts ``python -m module argv``, kills it with SIGKILL after ``delay``
    seconds; returns its exit status if it finished first, else None."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *argv], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + delay
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return None


def _timed(module: str, argv: list[str]) -> float:
    started = time.time()
    subprocess.run([sys.executable, "-m", module, *argv], cwd=ROOT, check=True, capture_output=True)
    return time.time() - started


def _scores_are_one_whole_result(out, ids: set) -> None:
    """``out`` holds a whole result: every file readable and every row exactly
    once (the previous run's or the new run's), or, killed between the two
    renames of a commit, the previous result set aside to be put back."""
    if not (out / "scores").exists():
        assert [n for n in os.listdir(out) if n.startswith(".old-") and n.endswith("-scores")], os.listdir(
            out
        )
        return
    scores = pq.read_table(out / "scores")
    assert sorted(scores["id"].to_pylist()) == sorted(ids)
    if (out / "summary.json").exists():
        summary = json.loads((out / "summary.json").read_text())
        assert summary["counts"]["scored"] == len(ids) and summary["reconciled"]


def test_score_killed_at_random_moments_never_damages_the_output(tiny_model_dir, tmp_path):
    table = article_table(6000, seed=21)
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=500)
    out = tmp_path / "out"
    argv = [f"--input={tmp_path / 'in.parquet'}", f"--model_dir={tiny_model_dir}", f"--output={out}"]
    ids = set(table["id"].to_pylist())
    score.run(argv)
    duration = _timed("autoenc_beam.score", argv)
    rng = np.random.default_rng(13)
    finished = 0
    for delay in rng.uniform(0.3, 1.1 * duration, size=6):
        finished += _run_and_kill("autoenc_beam.score", argv, delay) is not None
        _scores_are_one_whole_result(out, ids)
    assert finished < 6, "no run was killed: the delays were too long"
    summary = score.run(argv)
    assert summary["counts"] == {**summary["counts"], "read": 6000, "scored": 6000, "rejected": 0}
    _scores_are_one_whole_result(out, ids)
    assert sorted(os.listdir(out)) == [".lock", "rejected", "scores", "summary.json"]
    assert pq.read_table(out / "scores").num_rows == 6000


def test_train_killed_at_random_moments_keeps_the_previous_model(article_parquet, tmp_path):
    model_dir = tmp_path / "m"
    argv = [f"--input={article_parquet}", f"--model_dir={model_dir}", *TINY_TRAIN_ARGS, "--epochs=3"]
    good = train.run(argv)
    duration = _timed("autoenc_beam.train", argv)
    rng = np.random.default_rng(17)
    for delay in rng.uniform(0.5, 1.1 * duration, size=4):
        _run_and_kill("autoenc_beam.train", argv, delay)
        # LATEST names a complete version, and every listed version loads.
        latest = load_artifact(str(model_dir))
        assert latest.version >= good.version
        for version in list_versions(str(model_dir)):
            assert load_artifact(str(model_dir), version=version).metadata.rows["read"] == 2000
    final = train.run(argv)
    assert load_artifact(str(model_dir)).version == final.version
    rows = final.metadata.rows
    assert rows["read"] == 2000 == rows["train"] + rows["validation"] + rows["rejected"]
    # The rerun removed what the killed runs left; no staged copy of the data remains.
    for version in os.listdir(model_dir):
        if os.path.isdir(model_dir / version):
            assert ".staging" not in os.listdir(model_dir / version), version


def test_staged_rows_left_by_a_run_killed_after_its_artifact_are_removed(tiny_model_dir, tmp_path, capsys):
    """A run killed after writing its artifact, before deleting its staged
    rows, leaves a complete version with ``.staging``: the next run removes
    the staged rows and keeps the artifact."""
    import shutil

    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model_dir)
    version = load_artifact(str(model_dir)).version
    staging = model_dir / version / train.STAGING
    (staging / "train").mkdir(parents=True)
    (staging / "train" / "part-0.tfrecord").write_bytes(b"rows")
    train.cleanup_abandoned(str(model_dir))
    assert not staging.exists()
    assert load_artifact(str(model_dir)).version == version
    assert f"removed what the interrupted training run {version} left (.staging)" in capsys.readouterr().err


def test_temporary_files_of_writes_killed_before_their_rename_are_removed(tiny_model_dir, tmp_path, capsys):
    """A whole-file write killed between writing and renaming leaves
    ``.<name>.<hex>.tmp``: the next score run on the output, and the next
    training run on the model directory, delete it; a fresh one in the model
    directory (a concurrent run's LATEST) is left alone."""
    import shutil

    table = article_table(300, seed=3)
    pq.write_table(table, tmp_path / "in.parquet")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".summary.json.19773e87.tmp").write_text('{"counts":')
    (out / ".notes.txt").write_text("a user's hidden file")
    score.run([f"--input={tmp_path / 'in.parquet'}", f"--model_dir={tiny_model_dir}", f"--output={out}"])
    assert sorted(os.listdir(out)) == [".lock", ".notes.txt", "rejected", "scores", "summary.json"]

    model_dir = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model_dir)
    version = load_artifact(str(model_dir)).version
    (model_dir / version / ".metadata.json.0a1b2c3d.tmp").write_text("{")
    (model_dir / ".LATEST.0a1b2c3d.tmp").write_text("x")
    (model_dir / ".LATEST.99999999.tmp").write_text("y")
    hour_ago = time.time() - 3600
    os.utime(model_dir / ".LATEST.0a1b2c3d.tmp", (hour_ago, hour_ago))
    train.cleanup_abandoned(str(model_dir))
    assert not (model_dir / version / ".metadata.json.0a1b2c3d.tmp").exists()
    assert sorted(n for n in os.listdir(model_dir) if n.endswith(".tmp")) == [".LATEST.99999999.tmp"]
    assert load_artifact(str(model_dir)).version == version
    assert ".metadata.json.0a1b2c3d.tmp" in capsys.readouterr().err
