import json
import os

import numpy as np
import pytest

from autoenc import artifact as artifacts
from autoenc.artifact import ArtifactMetadata, load_artifact, write_artifact
from autoenc.errors import ArtifactError
from autoenc.models import build_dense
from autoenc.preprocessing import Normalizer
from autoenc.schema import Feature, FeatureSpec


def make_metadata(n_features=3, latent_dim=1, **overrides):
    fields = dict(
        spec=FeatureSpec(tuple(Feature(f"f{i}", "double") for i in range(n_features)), ("id",)),
        model_kind="dense",
        hyperparameters={"hidden_units": [8]},
        latent_dim=latent_dim,
        normalization=Normalizer(np.arange(n_features, dtype=float), np.ones(n_features)),
        threshold=0.5,
        threshold_method={"method": "contamination", "contamination": 0.01},
        validation_error_quantiles=[0.0, 1.0],
        history={"loss": [1.0], "val_loss": [1.0], "best_epoch": 1},
        rows={"read": 10, "used": 10, "train": 8, "validation": 2, "rejected": 0},
        input={"pattern": "x", "format": "parquet", "files": 1},
        library_versions={},
        created_at=artifacts.utc_now(),
    )
    fields.update(overrides)
    return ArtifactMetadata(**fields)


def save(model_dir, n_features=3, latent_dim=1, **overrides):
    model = build_dense(n_features, latent_dim=latent_dim, hidden_units=(8,))
    version = artifacts.new_version()
    write_artifact(str(model_dir), version, model, make_metadata(n_features, latent_dim, **overrides))
    return version, model


def test_round_trip_gives_the_same_scores(tmp_path, rng):
    version, model = save(tmp_path)
    loaded = load_artifact(str(tmp_path))
    assert loaded.version == version
    assert (tmp_path / "LATEST").read_text().strip() == version
    assert loaded.metadata.spec.names == ("f0", "f1", "f2")
    assert loaded.metadata.threshold == 0.5
    x = rng.normal(size=(16, 3)).astype("float32")
    np.testing.assert_allclose(loaded.model.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    scores = loaded.scorer().score(x.astype("float64"))
    assert scores.latent.shape == (16, 1)


def test_latest_moves_to_the_newest_version_and_old_ones_still_load(tmp_path):
    first, _ = save(tmp_path)
    second, _ = save(tmp_path)
    assert load_artifact(str(tmp_path)).version == second
    assert load_artifact(str(tmp_path), version=first).version == first


def test_crash_while_writing_leaves_latest_on_the_previous_version(tmp_path, monkeypatch):
    good, _ = save(tmp_path)
    real_write = artifacts._write_text

    def failing_write(path, text):
        if artifacts.METADATA_FILE in path:
            raise OSError("disk full")
        real_write(path, text)

    monkeypatch.setattr(artifacts, "_write_text", failing_write)
    with pytest.raises(OSError, match="disk full"):
        save(tmp_path)
    monkeypatch.undo()
    assert load_artifact(str(tmp_path)).version == good


def test_crash_after_metadata_before_latest_keeps_previous(tmp_path, monkeypatch):
    good, _ = save(tmp_path)
    monkeypatch.setattr(
        artifacts, "load_artifact", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed"))
    )
    with pytest.raises(RuntimeError, match="killed"):
        save(tmp_path)
    monkeypatch.undo()
    assert load_artifact(str(tmp_path)).version == good
    assert len([d for d in os.listdir(tmp_path) if not d.startswith(("LATEST", "."))]) == 2
    # The version that failed to load back is not listed: its files are gone.
    assert artifacts.list_versions(str(tmp_path)) == [good]


def test_missing_directory_and_missing_latest_are_explained(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        load_artifact(str(tmp_path / "nope"))
    with pytest.raises(ArtifactError, match="no LATEST file.*no model version"):
        load_artifact(str(tmp_path))
    version, _ = save(tmp_path)
    os.remove(tmp_path / "LATEST")
    with pytest.raises(ArtifactError, match=f"holds version\\(s\\) {version}"):
        load_artifact(str(tmp_path))


def test_unknown_version_lists_the_known_ones(tmp_path):
    version, _ = save(tmp_path)
    with pytest.raises(ArtifactError, match=f"v9 does not exist.*{version}"):
        load_artifact(str(tmp_path), version="v9")


def edit_metadata(tmp_path, version, edit):
    path = tmp_path / version / "metadata.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda d: d.pop("threshold"), ["'threshold' is missing"]),
        (lambda d: d["threshold"].update(value="high"), ["'threshold.value'", "a number", '"high"']),
        (lambda d: d["normalization"].update(scale=[1.0, 0.0, 1.0]), ["normalization.scale", "positive"]),
        (lambda d: d["normalization"].update(mean=[1.0]), ["normalization.mean", "3 finite numbers"]),
        (lambda d: d.update(format_version=99), ["format_version is 99"]),
        (lambda d: d["model"].update(latent_dim=2), ["latent_dim=2"]),
        (
            lambda d: d.update(latent_distribution={"rows": 5, "mean": [0.0, 1.0], "precision": [[1.0]]}),
            ["latent_distribution.mean", "1 finite numbers"],
        ),
        (
            lambda d: d.update(latent_distribution={"rows": 5, "mean": [0.0], "precision": [[None]]}),
            ["latent_distribution.precision", "1 x 1 finite numbers"],
        ),
        (lambda d: d.update(latent_distribution={"mean": [0.0]}), ["'latent_distribution.rows' is missing"]),
        (
            lambda d: d.update(
                features=d["features"][:2],
                normalization={"method": "zscore", "mean": [0.0, 0.0], "scale": [1.0, 1.0]},
            ),
            ["lists 2 feature values"],
        ),
    ],
)
def test_damaged_metadata_names_file_and_field(tmp_path, edit, words):
    version, _ = save(tmp_path)
    path = edit_metadata(tmp_path, version, edit)
    with pytest.raises(ArtifactError) as info:
        load_artifact(str(tmp_path))
    message = str(info.value)
    assert "metadata.json" in message or "model.keras" in message
    if "metadata.json" in message:
        assert path in message or "model.keras" in message
    for word in words:
        assert word in message


def test_latent_distribution_round_trips_and_is_optional(tmp_path, rng):
    from autoenc.scoring import LatentDistribution, latent_moments

    z = rng.normal(size=(50, 2))
    distribution = LatentDistribution.from_moments(*latent_moments(z))
    save(tmp_path / "new", latent_dim=2, latent_distribution=distribution)
    loaded = load_artifact(str(tmp_path / "new"))
    np.testing.assert_array_equal(loaded.metadata.latent_distribution.precision, distribution.precision)
    assert loaded.metadata.latent_distribution.rows == 50
    scores = loaded.scorer().score(rng.normal(size=(7, 3)))
    np.testing.assert_allclose(scores.latent_distance, distribution.distance(scores.latent), rtol=1e-6)
    # An artifact without one (written before it existed) loads and scores without it.
    save(tmp_path / "old", latent_dim=2)
    assert load_artifact(str(tmp_path / "old")).scorer().score(np.zeros((2, 3))).latent_distance is None


def test_invalid_json_and_missing_model_file(tmp_path):
    version, _ = save(tmp_path)
    (tmp_path / version / "metadata.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_artifact(str(tmp_path))
    version, _ = save(tmp_path)
    os.remove(tmp_path / version / "model.keras")
    with pytest.raises(ArtifactError, match="model.keras is missing"):
        load_artifact(str(tmp_path), version=version)
