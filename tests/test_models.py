import keras
import numpy as np
import pytest

from autoenc.errors import ConfigError
from autoenc.models import BUILDERS, DECODER, LATENT_LAYER, build_pca, build_sparse, build_vae, scoring_model
from autoenc.training import MODEL_KINDS, TrainingConfig, build_model


def test_every_kind_has_a_builder_with_the_shared_contract():
    assert tuple(BUILDERS) == MODEL_KINDS
    shapes = {"conv": (6, 5, 2), "lstm": (10, 6), "transformer": (10, 6)}
    for kind, build in BUILDERS.items():
        shape = shapes.get(kind, (60,))
        model = build(
            60, latent_dim=2, hidden_units=(8,), activation="relu", sparsity=1e-3, beta=0.5, shape=shape
        )
        latent, reconstruction = scoring_model(model).outputs
        assert tuple(latent.shape) == (None, 2), kind
        assert tuple(reconstruction.shape) == (None, 60), kind
        assert model.get_layer(LATENT_LAYER) is not None


@pytest.mark.parametrize("kind", [k for k in MODEL_KINDS if k != "pca"])
def test_minmax_normalization_bounds_every_kinds_output(kind):
    """--normalization minmax: a sigmoid output, so reconstructions stay in [0, 1]
    (the training range) even for inputs far outside it; zscore: linear."""
    shape = {"conv": (6, 5, 2), "lstm": (10, 6), "transformer": (10, 6)}.get(kind)
    x = np.random.default_rng(0).normal(scale=50.0, size=(16, 60)).astype(np.float32)
    for normalization, bounded in (("minmax", True), ("zscore", False)):
        config = TrainingConfig(
            model=kind, latent_dim=2, hidden_units=(8,), loss="mse", normalization=normalization
        )
        _, reconstruction = scoring_model(build_model(config, 60, shape)).predict(x, verbose=0)
        inside = (reconstruction >= 0).all() and (reconstruction <= 1).all()
        assert inside == bounded, (kind, normalization, reconstruction.min(), reconstruction.max())


def test_vae_samples_in_training_and_passes_the_mean_otherwise():
    keras.utils.set_random_seed(0)
    model = build_vae(4, latent_dim=2, hidden_units=(16,))
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    inference = [model(x, training=False).numpy() for _ in range(2)]
    np.testing.assert_array_equal(inference[0], inference[1])
    assert not np.allclose(model(x, training=True).numpy(), inference[0])
    # The KL term is a model loss, and it is zero only for a posterior equal to the prior.
    model(x, training=True)
    assert len(model.losses) == 1 and float(model.losses[0]) >= 0
    assert model.get_layer(DECODER).inputs[0].shape[-1] == 2


def test_sparse_latent_is_non_negative_and_penalized():
    model = build_sparse(4, latent_dim=6, hidden_units=(16,), sparsity=1e-2)
    x = np.random.default_rng(1).normal(size=(32, 4)).astype("float32")
    latent = keras.Model(model.inputs, model.get_layer(LATENT_LAYER).output)(x).numpy()
    assert (latent >= 0).all()
    model(x)
    assert len(model.losses) == 1 and float(model.losses[0]) >= 0


@pytest.mark.parametrize(
    "build, kwargs, match",
    [
        (build_pca, {"latent_dim": 5}, "pca needs latent_dim <= the number of features"),
        (build_sparse, {"latent_dim": 2, "sparsity": -1.0}, "sparsity must be >= 0"),
        (build_vae, {"latent_dim": 2, "beta": -0.1}, "beta must be >= 0"),
    ],
)
def test_bad_hyperparameters_are_clear_errors(build, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build(4, **kwargs)


@pytest.mark.parametrize(
    "kind, shape",
    [("conv", (60,)), ("conv", (3, 4, 5, 1)), ("lstm", (2, 3, 10)), ("transformer", (2, 3, 10))],
)
def test_tensor_kinds_refuse_other_shapes(kind, shape):
    with pytest.raises(ConfigError, match=f"{kind} needs exactly one"):
        BUILDERS[kind](60, latent_dim=2, shape=shape)


def test_conv_reconstructs_odd_image_sizes():
    model = BUILDERS["conv"](7 * 9 * 3, latent_dim=4, shape=(7, 9, 3))
    x = np.random.default_rng(0).uniform(size=(2, 7 * 9 * 3)).astype("float32")
    assert model(x).shape == (2, 7 * 9 * 3)
