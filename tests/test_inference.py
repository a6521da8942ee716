"""``autoenc_beam.Score`` and ``autoenc_beam.AutoencoderModelHandler``: autoenc
inside other people's Beam pipelines, with ``autoenc score``'s numbers."""

from __future__ import annotations

import re

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.ml.inference.base import KeyedModelHandler, ModelMetadata, RunInference
from apache_beam.testing.util import assert_that, equal_to

from autoenc.artifact import load_artifact
from autoenc.datasets import FEATURES, article_table, planted_anomalies
from autoenc_beam import AutoencoderModelHandler, Score, score

pytestmark = pytest.mark.pipeline


@pytest.fixture(scope="module")
def rows() -> pa.Table:
    """Normal rows, planted anomalies and broken rows (a null, a NaN, an inf)."""
    table = pa.concat_tables([article_table(300, seed=7, id_prefix="new"), planted_anomalies(12)])
    broken = article_table(3, seed=8, id_prefix="broken").to_pydict()
    broken["x1"][0] = None
    broken["x2"][1] = float("nan")
    broken["x3"][2] = float("inf")
    return pa.concat_tables([table, pa.table(broken, schema=table.schema)])


@pytest.fixture(scope="module")
def cli_scores(rows, tiny_model_dir, tmp_path_factory) -> dict:
    """``autoenc score --passthrough`` on the rows written as Parquet: id -> row."""
    where = tmp_path_factory.mktemp("cli")
    pq.write_table(rows, where / "rows.parquet")
    summary = score.run(
        [
            f"--input={where / 'rows.parquet'}",
            f"--model_dir={tiny_model_dir}",
            f"--output={where / 'out'}",
            "--passthrough",
        ]
    )
    scored = pq.read_table(where / "out" / "scores").to_pylist()
    rejected = pq.read_table(where / "out" / "rejected").to_pylist()
    assert summary["counts"]["rejected"] == 3
    return {
        "scores": {r["id"]: r for r in scored},
        "rejected": {r["id"]: r for r in rejected},
        "counts": summary["counts"],
    }


# The model computes in float32, and how many rows go into one model call (rows
# arrive one by one and BatchElements grows the batches) changes the order of
# its sums (oneDNN blocks a matrix product by its row count): the outputs agree
# to float32 rounding, about 1e-7 of a value. The error of a row the model
# reconstructs well is a small difference of such values squared, so its
# relative change is larger (1e-4 seen on an error of 1e-4, 100 times under the
# threshold): errors agree to 1e-4 relative or 1e-6 absolute (in normalized
# units squared); flags agree exactly.
RTOL = 1e-4
ATOL = 1e-6


def _same_scores(got: dict, want: dict) -> None:
    assert got["is_anomaly"] == want["is_anomaly"], got["id"]
    np.testing.assert_allclose(
        got["reconstruction_error"], want["reconstruction_error"], rtol=RTOL, atol=ATOL
    )
    # anomaly_score is a share of validation rows in [0, 1]; latents are about 1 wide.
    np.testing.assert_allclose(got["anomaly_score"], want["anomaly_score"], rtol=RTOL, atol=1e-5)
    np.testing.assert_allclose(got["latent"], want["latent"], rtol=RTOL, atol=1e-5)
    assert [t["feature"] for t in got["top_features"]] == [t["feature"] for t in want["top_features"]]


def _matches(want: dict, n: int):
    """An ``assert_that`` matcher: ``n`` rows, each with ``want``'s scores for its id."""

    def check(actual):
        actual = [r if isinstance(r, dict) else r._asdict() for r in actual]
        assert len(actual) == n, len(actual)
        for row in actual:
            _same_scores(row, want[row["id"]])

    return check


def _reasons(want: dict):
    """An ``assert_that`` matcher: the rejected rows' ids, each reason matching a pattern."""

    def check(actual):
        got = {r["id"]: r["reason"] for r in (r if isinstance(r, dict) else r._asdict() for r in actual)}
        assert set(got) == set(want), got
        for key, pattern in want.items():
            assert re.fullmatch(pattern, got[key]), (key, got[key])

    return check


def test_score_after_read_from_csv_matches_autoenc_score(rows, cli_scores, tiny_model_dir, tmp_path):
    csv = tmp_path / "rows.csv"
    rows.to_pandas().to_csv(csv, index=False)
    with beam.Pipeline(runner="FnApiRunner") as p:
        result = p | beam.io.ReadFromCsv(str(csv)) | Score(tiny_model_dir)
        assert_that(
            result.counts | beam.CombinePerKey(sum),
            equal_to(sorted(cli_scores["counts"].items())),
            label="Counts",
        )
        assert_that(result.scores, _matches(cli_scores["scores"], 312), label="Scores")
        # Beam's CSV reader gives the empty cell and the NaN as NaN or None
        # (Parquet keeps the null): rejected both ways.
        assert_that(
            result.rejected,
            _reasons(
                {
                    "broken-000000": "column 'x1' is (null|NaN)",
                    "broken-000001": "column 'x2' is (null|NaN)",
                    "broken-000002": r"column 'x3' is \+inf",
                }
            ),
            label="Rejected",
        )
    assert set(cli_scores["rejected"]) == {"broken-000000", "broken-000001", "broken-000002"}


def test_score_takes_arrow_batches_dataframes_and_dicts(rows, cli_scores, tiny_model_dir):
    batches = rows.to_batches(max_chunksize=100)
    frame = rows.slice(0, 50).to_pandas()
    dicts = rows.slice(100, 20).to_pylist() + [{"id": "text", "x1": "abc", "x2": 1.0, "x3": 2.0, "x4": 3}]

    def arrow_rows(tables):
        out = []
        for t in tables:
            assert isinstance(t, pa.RecordBatch) and "latent" in t.schema.names
            out += t.to_pylist()
        return out

    with beam.Pipeline(runner="FnApiRunner") as p:
        arrow = p | "Arrow" >> beam.Create(batches) | "ScoreArrow" >> Score(tiny_model_dir)
        assert_that(
            arrow.scores | "Rows" >> beam.FlatMap(lambda t: t.to_pylist()),
            _matches(cli_scores["scores"], 312),
            label="ArrowScores",
        )
        assert_that(
            arrow.rejected | "RejectedRows" >> beam.FlatMap(lambda t: t.to_pylist()),
            _reasons({k: re.escape(v["reason"]) for k, v in cli_scores["rejected"].items()}),
            label="ArrowRejected",
        )
        frames = p | "Frames" >> beam.Create([frame]) | "ScoreFrames" >> Score(tiny_model_dir, keep=["id"])
        assert_that(
            frames.scores | "FrameRows" >> beam.FlatMap(lambda f: f.to_dict("records")),
            _matches(cli_scores["scores"], 50),
            label="FrameScores",
        )
        scored = p | "Dicts" >> beam.Create(dicts) | "ScoreDicts" >> Score(tiny_model_dir)
        assert_that(scored.scores, _matches(cli_scores["scores"], 20), label="DictScores")
        assert_that(
            scored.rejected,
            _reasons({"text": "column 'x1' is 'abc', expected a number"}),
            label="DictRejected",
        )
        assert_that(
            scored.counts | "Sum" >> beam.CombinePerKey(sum) | beam.Filter(lambda kv: kv[0] != "anomalies"),
            equal_to([("read", 21), ("scored", 20), ("rejected", 1), ("extreme", 0)]),
            label="DictCounts",
        )


def test_model_handler_keyed_unkeyed_numpy_and_arrow(rows, cli_scores, tiny_model_dir):
    good = rows.filter(pa.compute.invert(pa.compute.starts_with(rows["id"], "broken")))
    x = np.column_stack([good[name].to_numpy() for name in FEATURES])
    ids = good["id"].to_pylist()
    want = cli_scores["scores"]

    def check_rows(results):
        results = list(results)
        assert len(results) == len(ids)
        for key, result in results:
            w = want[key]
            assert result.inference.is_anomaly == w["is_anomaly"]
            np.testing.assert_allclose(
                result.inference.reconstruction_error, w["reconstruction_error"], rtol=RTOL, atol=ATOL
            )
            np.testing.assert_allclose(
                float(result.inference), w["reconstruction_error"], rtol=RTOL, atol=ATOL
            )

    def check_batches(results):
        (result,) = list(results)
        table = result.inference
        assert table.num_rows == len(ids)
        errors = [want[i]["reconstruction_error"] for i in ids]
        np.testing.assert_allclose(table["reconstruction_error"].to_numpy(), errors, rtol=RTOL, atol=ATOL)

    handler = AutoencoderModelHandler(tiny_model_dir, max_batch_size=64, metrics_namespace="mine")
    with beam.Pipeline(runner="FnApiRunner") as p:
        keyed = (
            p
            | "Keyed" >> beam.Create(list(zip(ids, x, strict=True)))
            | "Numpy" >> RunInference(KeyedModelHandler(handler))
        )
        assert_that(keyed, check_rows, label="KeyedNumpy")
        dicts = (
            p
            | "Dicts" >> beam.Create([(r["id"], beam.Row(**r)) for r in good.to_pylist()])
            | "Rows" >> RunInference(KeyedModelHandler(handler))
        )
        assert_that(dicts, check_rows, label="KeyedRows")
        arrow = p | "Arrow" >> beam.Create([good.combine_chunks()]) | "Batches" >> RunInference(handler)
        assert_that(arrow, check_batches, label="ArrowBatch")
        array = p | "Array" >> beam.Create([x]) | "Matrix" >> RunInference(handler)
        assert_that(array, check_batches, label="NumpyBatch")


def test_model_handler_bad_rows_go_to_the_dead_letter_queue(tiny_model_dir):
    handler = AutoencoderModelHandler(tiny_model_dir, max_batch_size=1)
    rows = [np.array([1.0, 1.0, 0.5, 2.0]), np.array([1.0, np.nan, 0.5, 2.0]), np.array([1.0, 2.0])]
    with beam.Pipeline(runner="FnApiRunner") as p:
        main, other = p | beam.Create(rows) | RunInference(handler).with_exception_handling()
        assert_that(main | "N" >> beam.combiners.Count.Globally(), equal_to([1]), label="Good")

        def reasons(failed):
            messages = sorted(str(exception) for _, exception in failed)
            assert len(messages) == 2, messages
            assert "row 0 has nan at value 1" in messages[0] or "row 0 has nan at value 1" in messages[1]
            assert any("takes 4 (x1, x2, x3, x4)" in m for m in messages), messages

        assert_that(other.failed_inferences, reasons, label="Failed")


def test_model_handler_follows_the_model_side_input(tiny_model_dir, tmp_path):
    """A new version named by RunInference's model side input (WatchFilePattern
    in streaming) is loaded: here a version retrained with a fixed threshold."""
    from autoenc import artifact as artifacts

    first = load_artifact(tiny_model_dir)
    metadata = __import__("dataclasses").replace(first.metadata, threshold=0.0)
    second = artifacts.write_artifact(str(tmp_path / "m"), "20990101T000000Z-aaaaaa", first.model, metadata)
    handler = AutoencoderModelHandler(tiny_model_dir)
    handler.update_model_path(f"{second.path}/metadata.json")
    model = handler.load_model()
    assert model.version == second.version and model.scorer.threshold == 0.0
    handler.update_model_path(f"{tiny_model_dir}/LATEST")
    assert handler.load_model().version == first.version
    with beam.Pipeline(runner="FnApiRunner") as p:
        side = p | "Model" >> beam.Create(
            [ModelMetadata(model_id=f"{second.path}/metadata.json", model_name="autoenc")]
        )
        out = (
            p
            | beam.Create([np.array([1.0, 1.0, 0.5, 2.0])])
            | RunInference(AutoencoderModelHandler(tiny_model_dir), model_metadata_pcoll=side)
        )
        assert_that(
            out | beam.Map(lambda r: (r.model_id, r.inference.is_anomaly)),
            equal_to([(second.version, True)]),
        )


def test_offline_detector_in_beams_anomaly_detection(rows, cli_scores, tiny_model_dir):
    from apache_beam.ml.anomaly.aggregations import AnyVote
    from apache_beam.ml.anomaly.base import EnsembleAnomalyDetector
    from apache_beam.ml.anomaly.thresholds import FixedThreshold
    from apache_beam.ml.anomaly.transforms import AnomalyDetection

    from autoenc_beam import offline_detector

    good = [r for r in rows.to_pylist() if not r["id"].startswith("broken")]
    want = {i: r["is_anomaly"] for i, r in cli_scores["scores"].items()}
    strict = offline_detector(tiny_model_dir, model_id="strict")
    loose = offline_detector(tiny_model_dir, model_id="loose", threshold_criterion=FixedThreshold(1e9))

    def check_single(results):
        results = list(results)
        assert len(results) == len(good)
        for key, result in results:
            (prediction,) = result.predictions
            assert prediction.label == int(want[key]), key
            assert prediction.model_id == "strict"

    def check_ensemble(results):
        results = list(results)
        assert len(results) == len(good)
        for key, result in results:
            (prediction,) = result.predictions
            assert prediction.label == int(want[key]), key  # any vote: the strict one decides

    with beam.Pipeline(runner="FnApiRunner") as p:
        keyed = p | beam.Create([(r["id"], beam.Row(**r)) for r in good])
        single = keyed | "Single" >> AnomalyDetection(strict)
        assert_that(single, check_single, label="SingleDetector")
        ensemble = keyed | "Ensemble" >> AnomalyDetection(
            EnsembleAnomalyDetector([strict, loose], aggregation_strategy=AnyVote())
        )
        assert_that(ensemble, check_ensemble, label="Ensemble")
