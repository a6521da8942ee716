"""Real tables are hostile: extreme values, big integers, damaged files, types
that differ between files, null keys, concurrent runs, glob characters in
paths. Every row ends up scored (never NaN, never "normal" by accident) or
rejected with its reason, and the counts are checked against what the files
say they hold."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import TINY_TRAIN_ARGS, write_tfrecord

from autoenc.artifact import list_versions, load_artifact
from autoenc.datasets import FEATURES, article_table
from autoenc.errors import ArtifactError, AutoencError, ConfigError, InputError
from autoenc_beam import evaluate, score, train

pytestmark = pytest.mark.pipeline
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def score_run(data, model_dir, output, *extra):
    return score.run([f"--input={data}", f"--model_dir={model_dir}", f"--output={output}", *extra])


def train_run(data, model_dir, *extra):
    return train.run([f"--input={data}", f"--model_dir={model_dir}", *TINY_TRAIN_ARGS, *extra])


def read(directory) -> pa.Table:
    return pq.read_table(str(directory))


def float_values(table: pa.Table, name: str) -> np.ndarray:
    """Every float in a column (lists and structs flattened), nulls dropped."""
    column = table[name].combine_chunks()
    while pa.types.is_list(column.type) or pa.types.is_struct(column.type):
        if pa.types.is_struct(column.type):
            column = column.field("share")
        else:
            column = pc.list_flatten(column)
    return column.drop_null().to_numpy(zero_copy_only=False).astype(np.float64)


def assert_no_nan(scores: pa.Table) -> None:
    for name in ("latent", "latent_distance", "reconstruction_error", "anomaly_score", "top_features"):
        if name in scores.column_names:
            assert not np.isnan(float_values(scores, name)).any(), name


# 1. Extreme but finite values are anomalies, never NaN, never "normal".


def test_extreme_finite_values_are_flagged_and_no_score_is_nan(tiny_model_dir, tmp_path):
    normal = article_table(30, seed=3)
    extreme = pa.table(
        {
            "id": ["e39", "e300", "minus-e300", "e30", "all-e300"],
            "z": [0.0] * 5,
            "x1": [1e39, 1e300, -1e300, 1e30, 1e300],
            "x2": [1.0, 1.0, 1.0, 1.0, 1e300],
            "x3": [0.5, 0.5, 0.5, 0.5, -1e300],
            "x4": [1.0, 1.0, 1.0, 1.0, 1e300],
        }
    )
    pq.write_table(pa.concat_tables([normal, extreme]), tmp_path / "in.parquet")
    summary = score_run(tmp_path / "in.parquet", tiny_model_dir, tmp_path / "out", "--error_map")
    scores = read(tmp_path / "out" / "scores")
    assert summary["counts"]["read"] == 35 == summary["counts"]["scored"] + summary["counts"]["rejected"]
    assert_no_nan(scores)
    assert not np.isnan(float_values(scores, "error_map")).any()
    rows = {r["id"]: r for r in scores.to_pylist()}
    for key in extreme["id"].to_pylist():
        row = rows[key]
        assert row["is_anomaly"] is True and row["anomaly_score"] == 1.0, row
        assert row["reconstruction_error"] > 1e6
    for key in ("e39", "e300", "minus-e300", "e30"):
        assert rows[key]["top_features"][0]["feature"] == "x1", rows[key]["top_features"]
    # Beyond float32 once normalized: error +inf, no latent (null, not NaN).
    for key in ("e300", "minus-e300", "all-e300"):
        assert rows[key]["reconstruction_error"] == float("inf") and rows[key]["latent"] is None
        assert rows[key]["latent_distance"] == float("inf")
    assert summary["counts"]["extreme"] == 3


# 2. One extreme value in the training data.


def test_one_extreme_training_value_is_rejected_and_the_model_is_as_good(tmp_path):
    clean = article_table(2000, seed=0)
    x3 = clean["x3"].to_numpy().copy()
    x3[7] = 1e200
    dirty = clean.set_column(clean.schema.get_field_index("x3"), "x3", pa.array(x3))
    pq.write_table(clean, tmp_path / "clean.parquet")
    pq.write_table(dirty, tmp_path / "dirty.parquet")
    # Split by key: the same rows train and validate both models (a split by
    # position hashes the file path, which differs).
    common = ["--seed=3", "--split_by=key"]
    good = train_run(tmp_path / "clean.parquet", tmp_path / "clean", *common)
    spoiled = train_run(tmp_path / "dirty.parquet", tmp_path / "dirty", *common)
    rejected = read(os.path.join(spoiled.path, "rejected"))
    assert rejected["id"].to_pylist() == ["row-000007"]
    assert "column 'x3' is 1e+200" in rejected["reason"][0].as_py()
    assert "too extreme to train on" in rejected["reason"][0].as_py()
    assert spoiled.metadata.rows["rejected"] == 1 and spoiled.metadata.rows["read"] == 2000
    # The statistics of the 1,999 other rows: about the clean ones, finite.
    np.testing.assert_allclose(
        spoiled.metadata.normalization.scale, good.metadata.normalization.scale, rtol=0.05
    )
    ratio = min(spoiled.metadata.history["val_loss"]) / min(good.metadata.history["val_loss"])
    print(f"validation loss with the 1e200 row over without it: {ratio:.3f}")
    assert 0.5 < ratio < 2, ratio
    bounds = spoiled.metadata.input["extreme_value_bounds"]
    assert bounds["spreads"] == 1e6 and bounds["features"]["x3"]["high"] < 1e10


def test_statistics_cannot_overflow():
    from autoenc.preprocessing import MomentStats, Normalizer

    x = np.array([[1e300, 1.0], [-1e300, 2.0], [1e308, 3.0], [1.7e308, 4.0]])
    parts = [MomentStats.from_array(x[i : i + 1]) for i in range(4)]
    unit = 2.0**1023  # exact scaling: the same statistics in units no sum overflows
    for stats in (MomentStats.from_array(x), MomentStats.merge(parts)):
        assert np.isfinite(stats.mean).all() and np.isfinite(stats.std).all()
        np.testing.assert_allclose(stats.mean[0], (x[:, 0] / unit).mean() * unit, rtol=1e-12)
        np.testing.assert_allclose(stats.std[0], (x[:, 0] / unit).std() * unit, rtol=1e-12)
        np.testing.assert_allclose(stats.mean[1], x[:, 1].mean(), rtol=1e-12)
        np.testing.assert_allclose(stats.std[1], x[:, 1].std(), rtol=1e-12)
        assert np.isfinite(Normalizer.from_stats(stats).scale).all()


# 3. int64 beyond 2**53, timestamps and identifiers.


def test_int64_beyond_2_53_converts_and_timestamps_and_ids_are_not_default_features(tmp_path, capsys):
    table = article_table(600, seed=1)
    n = table.num_rows
    table = table.append_column("row_id", pa.array(np.arange(n, dtype=np.int64)))
    table = table.append_column(
        "event_ns", pa.array(1_790_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 1_000_000_007)
    )
    table = table.append_column("big", pa.array(2**62 + np.arange(n, dtype=np.int64) * 2**40))
    table = table.drop_columns(["z"])
    pq.write_table(table, tmp_path / "in.parquet")
    artifact = train.run(
        [f"--input={tmp_path / 'in.parquet'}", f"--model_dir={tmp_path / 'm'}", "--key_columns=id"]
        + TINY_TRAIN_ARGS[2:]
        + ["--epochs=2"]
    )
    assert artifact.metadata.spec.names == ("x1", "x2", "x3", "x4")
    excluded = dict(artifact.metadata.spec.excluded)
    assert set(excluded) == {"row_id", "event_ns", "big"}
    assert "epoch timestamps in nanoseconds" in excluded["event_ns"]
    assert "identifier" in excluded["row_id"] and "2**53" in excluded["big"]
    err = capsys.readouterr().err
    assert "left out of the default features: 'row_id'" in err and "'event_ns' (values look like" in err
    # Named explicitly, int64 values beyond 2**53 are read as float64: no crash, no lost row.
    named = train.run(
        [
            f"--input={tmp_path / 'in.parquet'}",
            f"--model_dir={tmp_path / 'n'}",
            "--key_columns=id",
            "--features=x1,x2,x3,x4,event_ns,big",
        ]
        + TINY_TRAIN_ARGS[2:]
        + ["--epochs=2"]
    )
    assert named.metadata.rows["read"] == n and named.metadata.rows["rejected"] == 0
    summary = score_run(tmp_path / "in.parquet", tmp_path / "n", tmp_path / "out")
    assert summary["counts"]["scored"] == n and summary["reconciled"]


# 4. Damaged compressed files.


def _frames(raw: bytes) -> list[int]:
    """Byte offsets where each TFRecord record ends."""
    ends, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<Q", raw, offset)
        offset += 16 + length
        ends.append(offset)
    return ends


def test_a_gzip_tfrecord_cut_on_a_record_boundary_is_an_error_naming_the_file(tiny_model_dir, tmp_path):
    plain = tmp_path / "plain.tfrecord"
    write_tfrecord(article_table(200, seed=2), str(plain))
    raw = plain.read_bytes()
    boundary = _frames(raw)[119]  # after 120 whole records
    compressor = zlib.compressobj(wbits=31)
    head = compressor.compress(raw[:boundary]) + compressor.flush(zlib.Z_FULL_FLUSH)
    whole = head + compressor.compress(raw[boundary:]) + compressor.flush()
    (tmp_path / "ok.tfrecord.gz").write_bytes(whole)
    summary = score_run(tmp_path / "ok.tfrecord.gz", tiny_model_dir, tmp_path / "ok")
    assert summary["counts"]["read"] == 200
    # The same stream cut after record 120: every byte there decodes to whole
    # records; only the missing gzip trailer tells.
    cut = tmp_path / "cut.tfrecord.gz"
    cut.write_bytes(head)
    with pytest.raises(AutoencError, match=r"cut\.tfrecord\.gz is a truncated GZIP file"):
        score_run(cut, tiny_model_dir, tmp_path / "cut")
    assert not (tmp_path / "cut" / "summary.json").exists()
    damaged = bytearray(whole)
    damaged[len(whole) // 2] ^= 0x55
    (tmp_path / "flip.tfrecord.gz").write_bytes(bytes(damaged))
    with pytest.raises(AutoencError, match=r"flip\.tfrecord\.gz is (a damaged GZIP file|damaged)"):
        score_run(tmp_path / "flip.tfrecord.gz", tiny_model_dir, tmp_path / "flip")
    (tmp_path / "short.tfrecord").write_bytes(raw[: _frames(raw)[10] - 3])
    with pytest.raises(AutoencError, match=r"short\.tfrecord is truncated: record 10"):
        score_run(tmp_path / "short.tfrecord", tiny_model_dir, tmp_path / "short")


# 5. The reconciliation can fail.


def test_row_counts_are_checked_against_footers_and_written_files(tiny_model_dir, tmp_path, monkeypatch):
    from autoenc.errors import ReconciliationError
    from autoenc_beam import io

    pq.write_table(article_table(300, seed=4), tmp_path / "in.parquet", row_group_size=100)
    first = score_run(tmp_path / "in.parquet", tiny_model_dir, tmp_path / "out")
    assert [c["ok"] for c in first["reconciliation"]] == [True] * 4
    before = sorted(os.listdir(tmp_path / "out" / "scores"))

    real = io.parquet_bytes
    monkeypatch.setattr(
        io, "parquet_bytes", lambda table: real(table.slice(1)) if table.num_rows > 1 else real(table)
    )
    with pytest.raises(
        ReconciliationError, match="rows scored = rows in the files written for them: expected 300, found 297"
    ):
        score_run(tmp_path / "in.parquet", tiny_model_dir, tmp_path / "out")
    monkeypatch.undo()
    # Nothing was committed: the previous scores are there, and no summary claims success.
    assert sorted(os.listdir(tmp_path / "out" / "scores")) == before
    assert read(tmp_path / "out" / "scores").num_rows == 300
    assert not (tmp_path / "out" / "summary.json").exists()

    monkeypatch.setattr(io.InputPlan, "expected_rows", property(lambda self: 301))
    with pytest.raises(
        ReconciliationError,
        match="rows read = rows the input files' footers declare: expected 301, found 300",
    ):
        score_run(tmp_path / "in.parquet", tiny_model_dir, tmp_path / "out")


def test_training_reconciles_its_staged_rows(tmp_path, monkeypatch):
    from autoenc.errors import ReconciliationError
    from autoenc_beam import transforms

    pq.write_table(article_table(500, seed=4), tmp_path / "in.parquet")
    real = transforms.staged_file
    monkeypatch.setattr(transforms, "staged_file", lambda rows: real(rows[1:]))
    with pytest.raises(ReconciliationError, match="rows train = rows in the files written for them"):
        train_run(tmp_path / "in.parquet", tmp_path / "m", "--epochs=1")
    assert list_versions(str(tmp_path / "m")) == []
    (version,) = os.listdir(tmp_path / "m")
    assert sorted(n for n in os.listdir(tmp_path / "m" / version) if not n.startswith(".")) == [
        "FAILED",
        "rejected",
    ]


# 6. Two runs on one output.


def _start_score(argv, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "autoenc_beam.score", *argv],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def test_a_second_run_on_the_same_output_fails_fast_and_the_first_finishes(tiny_model_dir, tmp_path):
    from autoenc.errors import BusyError
    from autoenc_beam import outputs

    pq.write_table(article_table(20_000, seed=5), tmp_path / "in.parquet", row_group_size=1000)
    out = tmp_path / "out"
    argv = [f"--input={tmp_path / 'in.parquet'}", f"--model_dir={tiny_model_dir}", f"--output={out}"]
    first = _start_score(argv)
    deadline = time.time() + 120
    while (not out.exists() or outputs.is_free(str(out))) and first.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert first.poll() is None, "the first run ended before the second could start"
    started = time.time()
    with pytest.raises(BusyError, match=f"in use by run .* \\(process {first.pid} on"):
        score.run(argv)
    assert time.time() - started < 10
    assert first.wait(timeout=300) == 0, first.stderr.read().decode()[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["scored"] == 20_000 == read(out / "scores").num_rows
    assert len(set(read(out / "scores")["id"].to_pylist())) == 20_000
    # A killed holder does not block the next run: the lock dies with its process.
    killed = _start_score(argv)
    while outputs.is_free(str(out)) and killed.poll() is None:
        time.sleep(0.01)
    killed.kill()
    killed.wait()
    assert score.run(argv)["counts"]["scored"] == 20_000


def test_the_object_store_lease_refuses_a_second_holder_and_is_checked_at_commit(tmp_path, monkeypatch):
    from autoenc.errors import BusyError
    from autoenc_beam import outputs

    first = outputs.OutputLock(str(tmp_path), "run-a", local=False).acquire()
    with pytest.raises(BusyError, match="in use by run run-a"):
        outputs.OutputLock(str(tmp_path), "run-b", local=False).acquire()
    # A lease not renewed for LEASE_STALE_S is taken over; the old holder sees it at commit.
    monkeypatch.setattr(outputs, "LEASE_STALE_S", 0.0)
    second = outputs.OutputLock(str(tmp_path), "run-b", local=False).acquire()
    with pytest.raises(BusyError, match="in use by run run-b"):
        first.check()
    second.check()
    second.release()
    first.release()
    assert not (tmp_path / ".lock").exists()


# 7. Glob characters in paths.


@pytest.mark.parametrize("name, neighbour", [("day[1]", "day1"), ("run?1", "runX1"), ("all*", "all-other")])
def test_glob_characters_in_output_touch_nothing_else(tiny_model_dir, tmp_path, name, neighbour):
    pq.write_table(article_table(50, seed=6), tmp_path / "in.parquet")
    precious = [tmp_path / neighbour / "summary.json", tmp_path / neighbour / "scores" / "keep.parquet"]
    for path in precious:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"precious")
    for _ in range(2):
        summary = score_run(tmp_path / "in.parquet", tiny_model_dir, tmp_path / name)
        assert summary["counts"]["scored"] == 50 == read(tmp_path / name / "scores").num_rows
    for path in precious:
        assert path.read_bytes() == b"precious"


def test_glob_characters_in_the_model_directory_touch_nothing_else(article_parquet, tmp_path):
    precious = tmp_path / "models1" / "LATEST"
    precious.parent.mkdir()
    precious.write_text("not yours\n")
    first = train_run(article_parquet, tmp_path / "models[1]", "--epochs=1")
    second = train_run(article_parquet, tmp_path / "models[1]", "--epochs=1")
    assert list_versions(str(tmp_path / "models[1]")) == sorted([first.version, second.version])
    assert load_artifact(str(tmp_path / "models[1]")).version == second.version
    assert precious.read_text() == "not yours\n" and os.listdir(tmp_path / "models1") == ["LATEST"]


# 8. Replacing results, and markers.


def test_a_failed_commit_puts_the_previous_scores_back(tiny_model_dir, tmp_path, monkeypatch):
    pq.write_table(article_table(60, seed=7), tmp_path / "in.parquet")
    score_run(tmp_path / "in.parquet", tiny_model_dir, tmp_path / "out")
    before = read(tmp_path / "out" / "scores")
    real_rename = os.rename

    def failing_rename(source, target):
        if ".attempt-" in str(source):
            raise OSError("disk gone")
        real_rename(source, target)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="disk gone"):
        score_run(tmp_path / "in.parquet", tiny_model_dir, tmp_path / "out")
    monkeypatch.undo()
    assert read(tmp_path / "out" / "scores").equals(before)
    assert sorted(os.listdir(tmp_path / "out")) == [".lock", "rejected", "scores"]


def test_a_failed_evaluate_rerun_leaves_no_evaluation_json(tmp_path):
    table = article_table(800, seed=8).drop_columns(["z"])
    table = table.append_column("label", pa.array([0] * 790 + [1] * 10))
    pq.write_table(table, tmp_path / "labeled.parquet")
    train_run(tmp_path / "labeled.parquet", tmp_path / "m", "--label_column=label", "--epochs=3")
    argv = [f"--model_dir={tmp_path / 'm'}", f"--output={tmp_path / 'eval'}"]
    evaluate.run([f"--input={tmp_path / 'labeled.parquet'}", *argv])
    assert (tmp_path / "eval" / "evaluation.json").exists() and (tmp_path / "eval" / "report.html").exists()
    pq.write_table(table.drop_columns(["label"]), tmp_path / "unlabeled.parquet")
    with pytest.raises(InputError, match="Label column 'label' is not in"):
        evaluate.run([f"--input={tmp_path / 'unlabeled.parquet'}", *argv])
    assert not (tmp_path / "eval" / "evaluation.json").exists()
    assert not (tmp_path / "eval" / "report.html").exists()


# 9. A failed training run cleans up.


def test_a_training_run_that_fails_at_load_back_lists_no_version_and_leaves_no_staging(
    article_parquet, tmp_path, monkeypatch
):
    from autoenc import artifact as artifacts

    model_dir = tmp_path / "m"
    good = train_run(article_parquet, model_dir, "--epochs=1")
    real = artifacts.load_artifact

    def fail_on_new(directory, *, version=None):
        if version is not None and version != good.version:
            raise ArtifactError("simulated: the new version does not load")
        return real(directory, version=version)

    monkeypatch.setattr(artifacts, "load_artifact", fail_on_new)
    with pytest.raises(ArtifactError, match="simulated"):
        train_run(article_parquet, model_dir, "--epochs=1")
    monkeypatch.undo()
    assert list_versions(str(model_dir)) == [good.version]
    assert load_artifact(str(model_dir)).version == good.version
    (failed,) = [v for v in os.listdir(model_dir) if v not in (good.version, "LATEST")]
    left = sorted(os.listdir(model_dir / failed))
    assert ".staging" not in left and "metadata.json" not in left and "model.keras" not in left
    assert "simulated" in (model_dir / failed / "FAILED").read_text()


# 10. Constant features.


def test_a_constant_feature_stored_as_float32_at_scoring_does_not_flag_every_row(tmp_path):
    table = article_table(1500, seed=9).drop_columns(["z"])
    table = table.append_column("c", pa.array(np.full(table.num_rows, 0.1)))
    pq.write_table(table, tmp_path / "train.parquet")
    train.run(
        [f"--input={tmp_path / 'train.parquet'}", f"--model_dir={tmp_path / 'm'}", "--key_columns=id"]
        + TINY_TRAIN_ARGS[2:]
        + ["--features=x1,x2,x3,x4,c", "--epochs=5"]
    )
    new = article_table(300, seed=10).drop_columns(["z"])
    new = new.append_column("c", pa.array(np.full(new.num_rows, 0.1), pa.float32()))
    pq.write_table(new, tmp_path / "new.parquet")
    summary = score_run(tmp_path / "new.parquet", tmp_path / "m", tmp_path / "out")
    assert summary["counts"]["anomalies"] < 0.1 * new.num_rows, summary["counts"]
    # A changed constant still stands out.
    changed = new.set_column(new.schema.get_field_index("c"), "c", pa.array(np.full(new.num_rows, 0.11)))
    pq.write_table(changed, tmp_path / "changed.parquet")
    assert (
        score_run(tmp_path / "changed.parquet", tmp_path / "m", tmp_path / "changed")["counts"]["anomalies"]
        == new.num_rows
    )


# 11. Types across files; 12. null keys.


def test_files_with_other_types_and_missing_non_nullable_fields_are_scored(tiny_model_dir, tmp_path):
    a = article_table(40, seed=11, id_prefix="a")
    a_schema = pa.schema(
        [pa.field("id", pa.string(), nullable=False), pa.field("z", pa.float64(), nullable=False)]
        + [pa.field(f, pa.int64() if f == "x1" else pa.float64()) for f in FEATURES]
    )
    a = a.set_column(a.schema.get_field_index("x1"), "x1", pc.round(a["x1"])).cast(a_schema)
    b = article_table(40, seed=12, id_prefix="b").drop_columns(["z"])  # x1 non-integral, no z
    b = b.set_column(0, "id", pa.array(["b-0", None] + [f"b-{i}" for i in range(2, 40)]))
    pq.write_table(a, tmp_path / "a.parquet")
    pq.write_table(b, tmp_path / "b.parquet")
    summary = score_run(tmp_path / "*.parquet", tiny_model_dir, tmp_path / "out", "--passthrough")
    scores, rejected = read(tmp_path / "out" / "scores"), read(tmp_path / "out" / "rejected")
    assert summary["counts"] == {**summary["counts"], "read": 80, "scored": 79, "rejected": 1}
    assert scores.schema.field("x1").type == pa.float64() and scores.schema.field("z").nullable
    assert rejected["reason"].to_pylist() == ["key column 'id' is null"]
    assert rejected["source_file"][0].as_py().endswith("b.parquet") and rejected["source_row"][0].as_py() == 1
    b_x1 = {r["id"]: r["x1"] for r in scores.to_pylist() if r["id"].startswith("b")}
    assert b_x1["b-0"] == b["x1"][0].as_py()  # not rounded to the first file's int64


# 13. Reserved output names.


def test_an_input_column_named_like_a_score_column_is_refused_with_passthrough(tiny_model_dir, tmp_path):
    table = article_table(20, seed=13).append_column("anomaly_score", pa.array(np.zeros(20)))
    pq.write_table(table, tmp_path / "in.parquet")
    with pytest.raises(InputError, match="Input column 'anomaly_score' .* would be written to the scores"):
        score_run(tmp_path / "in.parquet", tiny_model_dir, tmp_path / "out", "--passthrough")
    # Not copied, not in the way: scored.
    assert score_run(tmp_path / "in.parquet", tiny_model_dir, tmp_path / "out")["counts"]["scored"] == 20


# 14. Damaged files that are not the first; the files listed once.


def test_every_damaged_or_empty_file_is_named_before_anything_runs(tiny_model_dir, tmp_path):
    pq.write_table(article_table(30, seed=14), tmp_path / "a.parquet")
    (tmp_path / "b.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    (tmp_path / "c.parquet").write_bytes(b"")
    started = time.time()
    with pytest.raises(InputError) as info:
        score_run(tmp_path / "*.parquet", tiny_model_dir, tmp_path / "out")
    message = str(info.value)
    assert "2 of the 3 file(s)" in message and "nothing was read" in message
    assert "b.parquet is not a readable Parquet file" in message and "c.parquet is empty (0 bytes)" in message
    assert time.time() - started < 30
    assert not any(n.startswith(".attempt-") for n in os.listdir(tmp_path / "out"))

    os.remove(tmp_path / "b.parquet")
    os.remove(tmp_path / "c.parquet")
    pq.write_table(article_table(0, seed=0), tmp_path / "empty.parquet")
    summary = score_run(tmp_path / "*.parquet", tiny_model_dir, tmp_path / "out")
    assert [(os.path.basename(f["path"]), f["rows"]) for f in summary["input"]["files"]] == [
        ("a.parquet", 30),
        ("empty.parquet", 0),
    ]
    assert all(f["bytes"] > 0 for f in summary["input"]["files"]) and summary["input"]["rows_declared"] == 30
    os.remove(tmp_path / "a.parquet")
    with pytest.raises(InputError, match="hold no rows"):
        score_run(tmp_path / "*.parquet", tiny_model_dir, tmp_path / "out")


# 15. TFRecord features that appear late.


def test_tfrecord_features_beyond_the_inferred_schema_are_reported(tiny_model_dir, tmp_path):
    table = article_table(1200, seed=15).drop_columns(["z"])
    late = table.append_column("late", pa.array([None] * 1100 + [1.0] * 100))
    write_tfrecord(late, str(tmp_path / "a.tfrecord"))
    other = (
        article_table(50, seed=16, id_prefix="o")
        .drop_columns(["z"])
        .append_column("extra", pa.array(np.ones(50)))
    )
    write_tfrecord(other, str(tmp_path / "b.tfrecord"))
    summary = score_run(tmp_path / "*.tfrecord", tiny_model_dir, tmp_path / "out", "--passthrough")
    # 'extra' is in the first records of another file: found at launch and read.
    assert "extra" in read(tmp_path / "out" / "scores").column_names
    # 'late' first appears after record 1,000 of the first file: said, not silently dropped.
    assert summary["ignored_tfrecord_features"] == {"late": 100}
    assert summary["counts"]["read"] == 1250 == summary["counts"]["scored"]


# 17. The local runner is explicit.


def test_the_default_runner_is_the_in_process_one_and_prism_is_not_fetched():
    from apache_beam.options.pipeline_options import SetupOptions, StandardOptions

    from autoenc_beam import options

    parsed = options.parse(["--input=x.parquet", "--model_dir=m"])
    assert parsed.view_as(StandardOptions).runner == "FnApiRunner" == options.LOCAL_RUNNER
    assert parsed.view_as(SetupOptions).save_main_session is False
    explicit = options.parse(["--input=x.parquet", "--model_dir=m", "--runner=PrismRunner"])
    assert explicit.view_as(StandardOptions).runner == "PrismRunner"


# 20. Small: version names, quantiles.


@pytest.mark.parametrize("version", ["../other", "a/b", ".hidden", "", "x" * 200])
def test_a_model_version_must_be_a_plain_name(tiny_model_dir, tmp_path, version):
    with pytest.raises(ArtifactError, match="is not a model version name"):
        load_artifact(tiny_model_dir, version=version)
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "LATEST").write_text("../../etc\n")
    with pytest.raises(ArtifactError, match="LATEST names '../../etc' is not a model version name"):
        load_artifact(str(model_dir))


def test_validation_error_quantiles_are_checked_on_load(tiny_model_dir, tmp_path):
    import shutil

    artifact = load_artifact(tiny_model_dir)
    for bad in ([0.5, float("nan")], [2.0, 1.0], [1.0], "x"):
        copy = tmp_path / f"m{len(os.listdir(tmp_path))}"
        shutil.copytree(tiny_model_dir, copy)
        meta = copy / artifact.version / "metadata.json"
        data = json.loads(meta.read_text())
        data["validation_error_quantiles"] = bad
        meta.write_text(json.dumps(data))
        with pytest.raises(ArtifactError, match="validation_error_quantiles' should be"):
            load_artifact(str(copy))


def test_bad_extreme_value_spreads_is_refused(article_parquet, tmp_path):
    with pytest.raises(ConfigError, match="--extreme_value_spreads must be > 0"):
        train_run(article_parquet, tmp_path / "m", "--extreme_value_spreads=0")


# 19. Bounded memory in evaluate.


def test_evaluate_keeps_a_bounded_sample_of_rows_and_baseline_rows(tmp_path, monkeypatch):
    from autoenc import reservoir
    from autoenc.datasets import planted_anomalies

    table = pa.concat_tables([article_table(1470, seed=18), planted_anomalies(30, seed=19)]).drop_columns(
        ["z"]
    )
    table = table.append_column("label", pa.array([0] * 1470 + [1] * 30))
    pq.write_table(table, tmp_path / "labeled.parquet")
    train_run(tmp_path / "labeled.parquet", tmp_path / "m", "--label_column=label", "--epochs=3")
    # A training input three times what the model trained on.
    for i in range(3):
        pq.write_table(
            article_table(1500, seed=30 + i, id_prefix=f"t{i}").drop_columns(["z"]),
            tmp_path / f"more-{i}.parquet",
        )
    monkeypatch.setattr(reservoir, "MAX_ROWS", 400)
    result = evaluate.run(
        [
            f"--input={tmp_path / 'labeled.parquet'}",
            f"--model_dir={tmp_path / 'm'}",
            f"--output={tmp_path / 'eval'}",
            f"--train_input={tmp_path / 'more-*.parquet'}",
            "--baseline_rows=250",
        ]
    )
    assert result["metrics_rows"] == {"rows": 400, "sampled": True, "of": 1500}
    assert result["baselines"]["rows"] == 250
    assert result["counts"]["evaluated"] == 1500 and result["reconciled"]
    assert 0.5 < result["methods"]["autoenc"]["roc_auc"] <= 1.0
