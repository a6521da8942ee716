import keras
import numpy as np
import pytest

from autoenc import training
from autoenc.datasets import article_features
from autoenc.errors import ConfigError
from autoenc.models import LATENT_LAYER
from autoenc.preprocessing import MomentStats, Normalizer
from autoenc.training import TrainingConfig, fit, make_dataset, staged_file


def fit_split(tmp_path, config, x, n_train, tag=""):
    """Fits ``config`` on rows ``x[:n_train]``, validating on the rest."""
    norm = Normalizer.from_stats(MomentStats.from_array(x[:n_train]))
    result = fit(
        config,
        n_features=x.shape[1],
        normalizer=norm,
        train_files=stage(tmp_path, f"t{tag}", x[:n_train]),
        val_files=stage(tmp_path, f"v{tag}", x[n_train:]),
        n_train=n_train,
        n_val=len(x) - n_train,
        verbose=0,
    )
    return result, norm


def stage(tmp_path, name, x, chunk=37):
    paths = []
    for start in range(0, len(x), chunk):
        path = tmp_path / f"{name}-{start:06d}.tfrecord"
        path.write_bytes(staged_file(x[start : start + chunk]))
        paths.append(str(path))
    return paths


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"epochs": 0}, "epochs"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"hidden_units": ()}, "hidden_units"),
        ({"learning_rate": -1.0}, "learning_rate"),
        ({"n_init": 0}, "n_init"),
        ({"contamination": 1.0}, "contamination"),
        ({"trim": 0.5}, "trim"),
        ({"init": "pca"}, "init"),
        ({"min_improvement": 1.0}, "min_improvement"),
        ({"normalization": "robust"}, "normalization"),
        ({"loss": "bce", "normalization": "zscore"}, "normalization"),
        ({"model": "pca", "normalization": "minmax"}, "normalization"),
    ],
)
def test_config_rejects_out_of_range_values(kwargs, name):
    with pytest.raises(ConfigError, match=f"{name} must be .* Received: {name}="):
        TrainingConfig(**kwargs)


class _Weights:
    """Stands in for a model: its weights are the epoch they were read at."""

    def __init__(self):
        self.epoch, self.restored, self.stop_training = None, None, False

    def get_weights(self):
        return self.epoch

    def set_weights(self, weights):
        self.restored = weights


def run_early_stopping(losses, patience, min_improvement):
    """Feeds ``losses`` to the callback; (epochs run, epoch whose weights were restored)."""
    callback = training.early_stopping(patience, min_improvement)
    model = _Weights()
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, loss in enumerate(losses):
        model.epoch = epoch
        callback.on_epoch_end(epoch, {"val_loss": loss})
        if model.stop_training:
            break
    callback.on_train_end()
    return epoch + 1, model.restored


def test_early_stopping_ignores_crawling_but_keeps_the_best_weights():
    crawl = [1.0, 0.5] + [0.5 * (1 - 1e-6 * k) for k in range(1, 30)]
    # Falls of a millionth do not restart the count: stops 3 epochs after 0.5 ...
    ran, best = run_early_stopping(crawl, patience=3, min_improvement=1e-4)
    assert ran == 5
    assert best == 4  # ... with the weights of the lowest loss seen, not of epoch 1
    # Counted as improvements (Keras's behaviour without min_delta), they run on.
    assert run_early_stopping(crawl, patience=3, min_improvement=0.0) == (len(crawl), len(crawl) - 1)
    # A real fall restarts the count; a rise does not; NaN stops at once.
    assert run_early_stopping([1.0, 1.1, 0.9, 1.0, 1.0, 0.95, 0.2], 3, 1e-4) == (6, 2)
    assert run_early_stopping([1.0, 0.8, float("nan"), 0.1], 3, 1e-4) == (3, 1)


def run_reduce_learning_rate(losses, patience, min_improvement):
    """Feeds ``losses`` to the callback on a real Adam; the learning rate logged after each epoch."""
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    callback = training.reduce_learning_rate(patience, min_improvement)
    callback.set_model(model)
    callback.on_train_begin()
    rates = []
    for epoch, loss in enumerate(losses):
        logs = {"val_loss": loss}
        callback.on_epoch_end(epoch, logs)
        rates.append(logs["learning_rate"])
        assert rates[-1] == pytest.approx(float(model.optimizer.learning_rate.numpy()))
    return rates


def test_learning_rate_falls_only_when_the_relative_fall_stalls():
    # Losses of a well-fitted model (min-max units): 1% lower every epoch. Keras's
    # ReduceLROnPlateau (absolute min_delta 1e-4) halved the rate every 2 epochs here.
    falling = [1e-5 * 0.99**k for k in range(12)]
    assert run_reduce_learning_rate(falling, patience=2, min_improvement=1e-4) == pytest.approx([1e-3] * 12)
    # A plateau halves it every `patience` epochs, down to 1e-6 and no lower.
    flat = run_reduce_learning_rate([1e-5] * 30, patience=2, min_improvement=1e-4)
    assert flat[:5] == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])
    assert min(flat) == pytest.approx(1e-6) and flat[-1] == pytest.approx(1e-6)
    # Crawling (a millionth per epoch) counts as a plateau; NaN too.
    crawl = run_reduce_learning_rate([1.0 * (1 - 1e-6 * k) for k in range(5)], 2, 1e-4)
    assert crawl == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])
    assert run_reduce_learning_rate([1.0, float("nan"), float("nan")], 2, 1e-4)[-1] == pytest.approx(5e-4)


def test_default_latent_dim_grows_with_the_features():
    assert [TrainingConfig().resolved_latent_dim(n) for n in (1, 4, 64, 100)] == [1, 2, 8, 10]


def test_dataset_streams_every_row_normalized(tmp_path, rng):
    x = rng.normal(5.0, 3.0, size=(500, 3))
    norm = Normalizer.from_stats(MomentStats.from_array(x))
    ds = make_dataset(stage(tmp_path, "t", x), 3, norm, batch_size=64, n_rows=500, shuffle=True, seed=1)
    rows = np.concatenate([b.numpy() for b, _ in ds])
    assert rows.shape == (500, 3) and rows.dtype == np.float32
    # Shuffled, but the same rows: compare sorted by the first column.
    expected = norm.transform(x)
    np.testing.assert_allclose(rows[np.argsort(rows[:, 0])], expected[np.argsort(expected[:, 0])], rtol=1e-6)
    assert ds.cardinality().numpy() == 8


def test_fit_tries_several_starts_and_learns(tmp_path, rng):
    z = rng.uniform(-1, 1, size=(1200, 1))
    x = np.hstack([z, 2 * z, -z]) + rng.normal(scale=0.01, size=(1200, 3))
    config = TrainingConfig(
        latent_dim=1, hidden_units=(16,), epochs=30, init="random", n_init=3, batch_size=64
    )
    result, _ = fit_split(tmp_path, config, x, 1000)
    assert [len(r) for r in result.warmup] == [3]  # 3 starts, one round keeps 1
    assert len(result.loss) == len(result.val_loss)
    assert min(result.val_loss) <= min(result.warmup[-1])
    # A linear 1-D structure: the model must explain nearly all the variance.
    assert min(result.val_loss) < 0.05
    assert result.best_epoch == int(np.argmin(result.val_loss)) + 1


def test_fit_needs_rows(tmp_path):
    with pytest.raises(ConfigError, match="0 validation rows"):
        fit(
            TrainingConfig(),
            n_features=1,
            normalizer=Normalizer(np.zeros(1), np.ones(1)),
            train_files=[],
            val_files=[],
            n_train=10,
            n_val=0,
        )


def test_start_selection_halves_each_round(tmp_path, rng):
    x = rng.normal(size=(640, 2))
    config = TrainingConfig(
        latent_dim=1, hidden_units=(4,), epochs=1, init="random", n_init=12, batch_size=128
    )
    result, _ = fit_split(tmp_path, config, x, 512)
    assert [len(r) for r in result.warmup] == [12, 6, 3]


def spearman(a, b):
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def test_spectral_start_orders_the_curve_and_wins_the_selection(tmp_path, rng, monkeypatch):
    """On the article's curve the spectral start's encoder follows z monotonically,
    and the start selection keeps it over random starts."""
    monkeypatch.setattr(training, "SPECTRAL_SAMPLE_ROWS", 600)
    monkeypatch.setattr(training, "SPECTRAL_ENCODER_STEPS", 600)
    monkeypatch.setattr(training, "SPECTRAL_DECODER_STEPS", 300)
    z = rng.uniform(-5, 5, 1200)
    x = article_features(z)
    config = TrainingConfig(latent_dim=1, hidden_units=(32, 32), epochs=1, n_init=4, batch_size=64)
    result, norm = fit_split(tmp_path, config, x, 1000)
    assert result.start == "spectral"
    assert [len(r) for r in result.warmup] == [4, 2]
    encoder = keras.Model(result.model.inputs, result.model.get_layer(LATENT_LAYER).output)
    latent = encoder.predict(norm.transform(x).astype("float32"), verbose=0)[:, 0]
    assert abs(spearman(latent, z)) > 0.99


def test_spectral_start_alone_and_its_fallback_on_too_few_rows(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(training, "SPECTRAL_ENCODER_STEPS", 20)
    monkeypatch.setattr(training, "SPECTRAL_DECODER_STEPS", 20)
    for n_train, expected in [(200, "spectral"), (12, "random 0")]:
        x = rng.normal(size=(n_train + 20, 3))
        config = TrainingConfig(latent_dim=1, hidden_units=(8,), epochs=1, n_init=1)
        result, _ = fit_split(tmp_path, config, x, n_train, tag=str(n_train))
        assert (result.start, result.warmup) == (expected, [])


def test_pca_fit_matches_numpy_svd(tmp_path, rng):
    """The pca kind reconstructs like numpy's SVD of the z-scored training rows."""
    mixing = rng.normal(size=(3, 6))
    x = rng.normal(size=(900, 3)) @ mixing + rng.normal(scale=0.1, size=(900, 6))
    config = TrainingConfig(model="pca", latent_dim=2)
    result, norm = fit_split(tmp_path, config, x, 700)
    assert (result.start, len(result.loss), result.best_epoch) == ("svd", 1, 1)
    z = norm.transform(x).astype(np.float64)
    _, _, vt = np.linalg.svd(z[:700], full_matrices=False)
    expected = z @ vt[:2].T @ vt[:2]
    got = result.model.predict(z.astype("float32"), verbose=0)
    np.testing.assert_allclose(got, expected, atol=2e-4)
    assert result.val_loss[0] == pytest.approx(np.mean((expected[700:] - z[700:]) ** 2), rel=1e-3)


def test_auto_start_policy_depends_on_the_latent_width():
    narrow, wide = TrainingConfig(latent_dim=2), TrainingConfig(latent_dim=3)
    assert (narrow.resolved_init(10), narrow.resolved_n_init(10)) == ("spectral", 16)
    assert (wide.resolved_init(10), wide.resolved_n_init(10)) == ("random", 1)
    # The default latent for 4 features is 2 wide: narrow.
    assert TrainingConfig().resolved_init(4) == "spectral"
    explicit = TrainingConfig(latent_dim=8, init="spectral", n_init=4)
    assert (explicit.resolved_init(10), explicit.resolved_n_init(10)) == ("spectral", 4)


def test_a_small_table_trains_the_same_model_twice_on_a_busy_machine():
    """Regression: with a table of one or two batches per pass, the start
    selection used to read the shared training dataset in passes cut short, and
    whether prefetching had begun the next pass (drawing the next shuffle seeds)
    depended on timing: on penguin-sized tables most seeds trained a different
    model each run. Fits with the same seed, while busy processes compete for
    the cores, must give the same weights bit for bit."""
    import subprocess
    import sys

    from autoenc import Autoencoder

    rng = np.random.default_rng(3)
    centers = np.array([[0.0, 0.0, 0.0, 0.0], [4.0, -2.0, 3.0, 1.0]])
    x = centers[rng.integers(0, 2, 180)] + rng.normal(size=(180, 4))
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        fits = [Autoencoder(seed=1, n_init=4, epochs=30).fit(x) for _ in range(3)]
    finally:
        for p in busy:
            p.kill()
            p.wait()
    weights = [f.model_.get_weights() for f in fits]
    for other in weights[1:]:
        for a, b in zip(weights[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


def test_trimmed_loss_leaves_the_worst_rows_of_a_batch_out_of_the_loss_and_the_gradient():
    import tensorflow as tf

    from autoenc.models import TrimmedLoss

    y_true = tf.zeros((8, 3))
    y_pred = tf.Variable(np.array([[0.1] * 3] * 6 + [[5.0] * 3, [9.0] * 3], dtype="float32"))
    loss = TrimmedLoss("mse", trim=0.25)  # ceil(0.25 * 8) = 2 rows left out
    with tf.GradientTape() as tape:
        value = loss(y_true, y_pred)
    np.testing.assert_allclose(float(value), 0.01, rtol=1e-5)
    gradient = tape.gradient(value, y_pred).numpy()
    assert np.all(gradient[6:] == 0) and np.all(gradient[:6] > 0)
    loss.share.assign(0.0)  # the warm-up: every row counts
    np.testing.assert_allclose(float(loss(y_true, y_pred)), (6 * 0.01 + 25 + 81) / 8, rtol=1e-5)
    clone = TrimmedLoss.from_config(loss.get_config())
    assert clone.trim == 0.25 and float(clone(y_true, y_pred)) == pytest.approx(0.01, rel=1e-5)


def test_trimmed_loss_of_image_rows_and_one_row_batches():
    from autoenc.models import TrimmedLoss

    y_true = np.zeros((4, 2, 2, 1), "float32")
    y_pred = np.ones((4, 2, 2, 1), "float32") * np.array([1, 1, 1, 3], "float32")[:, None, None, None]
    assert float(TrimmedLoss("mse", trim=0.2)(y_true, y_pred)) == pytest.approx(1.0)
    # A batch of one row keeps it, whatever the share.
    assert float(TrimmedLoss("mse", trim=0.4)(y_true[:1], y_pred[-1:])) == pytest.approx(9.0)


def test_trim_keeps_a_planted_cluster_among_the_training_rows_unlearned(tmp_path, rng):
    """Normal rows lie near a line in 4-D; 5% of the training rows are a tight
    cluster far off it. Trained on all rows, the model learns the cluster too;
    with trim, its error stays far above the normal rows'."""
    z = rng.uniform(-1, 1, (1500, 1))
    normal = np.hstack([z, 2 * z, -z, 0.5 * z]) + 0.02 * rng.normal(size=(1500, 4))
    cluster = np.array([1.5, -1.5, 1.5, -1.5]) + 0.02 * rng.normal(size=(75, 4))
    x = np.concatenate([normal, cluster])[rng.permutation(1575)].astype("float32")
    ratios = {}
    for trim in (0.0, 0.1):
        config = TrainingConfig(
            latent_dim=1, hidden_units=(32, 32), epochs=120, n_init=1, init="random", trim=trim
        )
        result, norm = fit_split(tmp_path, config, x, 1260, tag=str(trim))
        errors = [
            np.mean((result.model.predict(norm.transform(p), verbose=0) - norm.transform(p)) ** 2, axis=1)
            for p in (normal[:300], cluster)
        ]
        ratios[trim] = np.median(errors[1]) / np.median(errors[0])
    assert ratios[0.1] > 5 * ratios[0.0], ratios
