"""Every model kind beside the article's models and PCA, in one run.

Prints one table and writes two PNG figures:

1. the article's dataset (10,000 rows, latent 1): ``dense`` with autoenc's
   defaults beside PCA(1), validation MSE in raw units;
2. Fashion-MNIST (a training subset, the 10,000 test images as validation):
   the article's exact convolutional autoencoder (Conv2D 4-4-1 filters 5x5 relu
   -> a 16x16x1 latent, Conv2DTranspose back, sigmoid, binary cross-entropy,
   Adam, batch 128, EarlyStopping(patience=1)) beside autoenc's ``conv``
   (defaults, latent 28 = ceil(sqrt(784)), epochs capped), validation BCE and
   MSE (pixels in [0, 1]) and latent size;
3. PCA at the same latent sizes as the autoencoders (1 on the article's data;
   28 and 256 on Fashion-MNIST), same figures;
4. ``vae`` (latent 8, bce) on Fashion-MNIST: ``vae_samples.png``, an 8x8 grid of
   generated images, and ``three_rows.png``, the article's figure: originals /
   the article's 16x16 latent / its reconstructions / autoenc conv's
   reconstructions;
5. ``lstm`` and ``transformer`` beside PCA (latent 4) on sliding windows of
   real series (statsmodels: yearly sunspot numbers, 24-year windows; weekly
   CO2, 52-week windows, its 59 gaps interpolated): validation MSE in raw
   units; and on a series with 12 planted anomalies of four kinds (spike,
   level shift, faster wave, flat line), trained on its clean first half:
   ROC-AUC of the window errors on the second half.

Every autoenc model is trained with ``autoenc.training.fit`` from staged files,
as ``autoenc train`` does. Long trainings use a subset of Fashion-MNIST and an
epoch cap, both printed in the table. Needs the Debian package
``dataset-fashion-mnist`` and statsmodels (``pip install -e '.[bench]'``).

Usage:
    python benchmarks/kinds.py --out kinds-out              # about 15 minutes on 2 cores
    python benchmarks/kinds.py --sections sequences --out kinds-out   # part 5 alone
    python benchmarks/kinds.py --fmnist_train 2000 --conv_epochs 1 --article_conv_epochs 1 \
        --vae_epochs 1 --dense_epochs 2                      # a smoke run
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from autoenc.datasets import article_features  # noqa: E402
from autoenc.preprocessing import MomentStats, Normalizer  # noqa: E402
from autoenc.training import TrainingConfig, fit, staged_file  # noqa: E402

FMNIST_DIR = "/usr/share/datasets/fashion-mnist"


def load_fmnist(kind: str) -> np.ndarray:
    path = os.path.join(FMNIST_DIR, f"{kind}-images-idx3-ubyte.gz")
    if not os.path.exists(path):
        sys.exit(f"{path} not found: install the Debian package dataset-fashion-mnist.")
    with gzip.open(path) as f:
        return np.frombuffer(f.read()[16:], np.uint8).reshape(-1, 28, 28).astype(np.float64)


def stage(rows: np.ndarray, directory: str, name: str, chunk: int = 4096) -> list[str]:
    paths = []
    for start in range(0, len(rows), chunk):
        path = os.path.join(directory, f"{name}-{start:012d}.tfrecord")
        with open(path, "wb") as f:
            f.write(staged_file(rows[start : start + chunk]))
        paths.append(path)
    return paths


def fit_autoenc(config, x_train, x_val, workdir, tag, *, sizes=None, shape=None):
    """Fits ``config`` like ``autoenc train`` (staged files, training statistics)."""
    normalizer = Normalizer.from_stats(
        MomentStats.from_array(x_train), config.resolved_normalization, sizes=sizes
    )
    started = time.time()
    result = fit(
        config,
        n_features=x_train.shape[1],
        normalizer=normalizer,
        shape=shape,
        train_files=stage(x_train, workdir, f"{tag}-train"),
        val_files=stage(x_val, workdir, f"{tag}-val"),
        n_train=len(x_train),
        n_val=len(x_val),
        verbose=0,
    )
    seconds = time.time() - started

    def reconstruct(x):
        z = result.model.predict(normalizer.transform(x), batch_size=4096, verbose=0)
        return normalizer.inverse_transform(z)

    return reconstruct, result, seconds


def pca_reconstruct(x_train, k):
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    _, _, vt = np.linalg.svd((x_train - mean) / std, full_matrices=False)
    v = vt[:k]
    return lambda x: (((x - mean) / std) @ v.T @ v) * std + mean


def bce(p, y):
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def article_conv(seed):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(4, 5, activation="relu")(inputs)
    h = keras.layers.Conv2D(4, 5, activation="relu")(h)
    latent = keras.layers.Conv2D(1, 5, activation="relu", name="latent")(h)
    h = keras.layers.Conv2DTranspose(4, 5, activation="relu")(latent)
    h = keras.layers.Conv2DTranspose(4, 5, activation="relu")(h)
    outputs = keras.layers.Conv2DTranspose(1, 5, activation="sigmoid")(h)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(), "binary_crossentropy")
    return model, keras.Model(inputs, latent)


def grid_png(images: np.ndarray, rows: int, cols: int, path: str, scale: int = 2) -> None:
    """Writes images [n, h, w] in [0, 1] as one PNG grid (1-pixel gaps)."""
    import tensorflow as tf

    n, h, w = images.shape
    canvas = np.ones((rows * (h + 1) + 1, cols * (w + 1) + 1))
    for i in range(min(n, rows * cols)):
        r, c = divmod(i, cols)
        canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + c * (w + 1) : 1 + c * (w + 1) + w] = images[i]
    canvas = np.kron(canvas, np.ones((scale, scale)))
    pixels = (np.clip(canvas, 0, 1) * 255).astype(np.uint8)[..., None]
    tf.io.write_file(path, tf.io.encode_png(pixels))


def sliding_windows(values: np.ndarray, t: int) -> np.ndarray:
    return np.stack([values[i : i + t] for i in range(len(values) - t + 1)])


def planted_series(seed: int, n: int = 6000, t: int = 48):
    """A univariate series (two seasonal waves and noise) whose first half is
    clean and whose second half holds 12 planted anomalies of 12 steps, four
    kinds in turn: a spike, a level shift, a faster wave, a flat line. Returns
    the training windows (first half), the scored windows (second half) and a
    label per scored window (True when it overlaps an anomaly)."""
    rng = np.random.default_rng(seed)
    steps = np.arange(n)
    series = np.sin(2 * np.pi * steps / 50) + 0.5 * np.sin(2 * np.pi * steps / 13) + rng.normal(0, 0.1, n)
    planted = np.zeros(n, dtype=bool)
    half = n // 2
    starts = np.sort(rng.choice(np.arange(half + t, n - t, 2 * t), 12, replace=False))
    for k, start in enumerate(starts):
        span = slice(start, start + 12)
        if k % 4 == 0:
            series[start + 5] += 4.0
        elif k % 4 == 1:
            series[span] += 1.5
        elif k % 4 == 2:
            series[span] = np.sin(2 * np.pi * steps[span] / 6)
        else:
            series[span] = series[start]
        planted[span] = True
    train = sliding_windows(series[:half], t)
    scored = sliding_windows(series[half:], t)
    labels = sliding_windows(planted[half:], t).any(axis=1)
    return train, scored, labels


def sequence_kinds(args, workdir, add) -> None:
    """5. lstm and transformer beside PCA on sliding windows of real series
    (yearly sunspots, weekly CO2 with its gaps interpolated) and on a series
    with planted anomalies (ROC-AUC of the window errors)."""
    import statsmodels.api as sm
    from sklearn.metrics import roc_auc_score

    spots = sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(np.float64)
    co2 = sm.datasets.co2.load_pandas().data["co2"].interpolate().to_numpy(np.float64)
    kinds = (("lstm", (32,), "lstm (32 units)"), ("transformer", (32, 32), "transformer (2 blocks of 32)"))
    for name, values, t, latent in (("sunspots", spots, 24, 4), ("co2", co2, 52, 4)):
        windows = sliding_windows(values, t)
        val = np.random.default_rng(args.seed).random(len(windows)) < 0.2
        data = f"{name} ({len(windows)} windows of {t})"
        for kind, units, label in kinds:
            config = TrainingConfig(
                model=kind, hidden_units=units, latent_dim=latent, epochs=args.sequence_epochs, seed=args.seed
            )
            reconstruct, result, seconds = fit_autoenc(
                config, windows[~val], windows[val], workdir, f"{name}-{kind}", shape=(t,)
            )
            r = reconstruct(windows[val])
            add(
                data,
                f"autoenc {label}",
                latent,
                {"val_mse_raw": float(np.mean((r - windows[val]) ** 2))},
                f"{len(result.loss)} epochs, {seconds:.0f} s",
            )
        rp = pca_reconstruct(windows[~val], latent)(windows[val])
        add(data, "PCA", latent, {"val_mse_raw": float(np.mean((rp - windows[val]) ** 2))})

    train, scored, labels = planted_series(args.seed)
    val = np.random.default_rng(args.seed).random(len(train)) < 0.2
    data = f"planted ({labels.sum()} of {len(scored)} windows)"
    for kind, units, label in kinds:
        config = TrainingConfig(
            model=kind, hidden_units=units, latent_dim=4, epochs=args.sequence_epochs, seed=args.seed
        )
        reconstruct, result, seconds = fit_autoenc(
            config, train[~val], train[val], workdir, f"planted-{kind}", shape=(train.shape[1],)
        )
        errors = np.mean((reconstruct(scored) - scored) ** 2, axis=1)
        add(
            data,
            f"autoenc {label}",
            4,
            {"roc_auc": float(roc_auc_score(labels, errors))},
            f"{len(result.loss)} epochs, {seconds:.0f} s",
        )
    pca = pca_reconstruct(train[~val], 4)
    errors = np.mean((pca(scored) - scored) ** 2, axis=1)
    add(data, "PCA", 4, {"roc_auc": float(roc_auc_score(labels, errors))})


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="kinds-out", help="directory for the figures and results.json")
    parser.add_argument("--fmnist_train", type=int, default=20_000, help="Fashion-MNIST training images used")
    parser.add_argument("--conv_epochs", type=int, default=10, help="epoch cap of autoenc's conv")
    parser.add_argument("--article_conv_epochs", type=int, default=30, help="epoch cap of the article's conv")
    parser.add_argument("--vae_epochs", type=int, default=30)
    parser.add_argument("--dense_epochs", type=int, default=500, help="epoch cap of dense (its default: 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sections",
        default="article,fmnist,sequences",
        help="comma-separated parts to run: article (1), fmnist (2-4), sequences (5)",
    )
    parser.add_argument("--sequence_epochs", type=int, default=300, help="epoch cap of lstm and transformer")
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    os.makedirs(args.out, exist_ok=True)
    rows, results = [], {}
    run_started = time.time()

    def add(data, method, latent, figures, note=""):
        rows.append((data, method, latent, figures, note))
        results[f"{data} | {method}"] = {"latent": latent, **figures, "note": note}
        print(
            f"{data:22} {method:34} {latent!s:>9}  {json.dumps(figures)} {note}", file=sys.stderr, flush=True
        )

    with tempfile.TemporaryDirectory() as workdir:
        if "article" in sections:
            # 1. The article's dataset, latent 1: dense vs PCA(1).
            rng = np.random.default_rng(args.seed)
            x = article_features(rng.uniform(-5, 5, 10_000))
            val = rng.random(len(x)) < 0.2
            config = TrainingConfig(latent_dim=1, epochs=args.dense_epochs, seed=args.seed)
            reconstruct, result, seconds = fit_autoenc(config, x[~val], x[val], workdir, "dense")
            r = reconstruct(x)
            add(
                "article (10k rows)",
                "autoenc dense (defaults)",
                1,
                {
                    "val_mse_raw": float(np.mean((r[val] - x[val]) ** 2)),
                    "max_abs_error": float(np.abs(r - x).max()),
                },
                f"{len(result.loss)} epochs, {seconds:.0f} s, start {result.start}",
            )
            r = pca_reconstruct(x[~val], 1)(x)
            add(
                "article (10k rows)",
                "PCA",
                1,
                {
                    "val_mse_raw": float(np.mean((r[val] - x[val]) ** 2)),
                    "max_abs_error": float(np.abs(r - x).max()),
                },
            )

        if "fmnist" in sections:
            # 2-3. Fashion-MNIST: the article's conv, autoenc conv, PCA at equal latents.
            train_images = load_fmnist("train")[: args.fmnist_train]
            val_images = load_fmnist("t10k")
            y_val = val_images.reshape(len(val_images), -1) / 255.0
            data = f"Fashion-MNIST ({len(train_images) // 1000}k/10k)"

            model, encoder = article_conv(args.seed)
            import keras

            started = time.time()
            history = model.fit(
                train_images[..., None] / 255.0,
                train_images[..., None] / 255.0,
                batch_size=128,
                epochs=args.article_conv_epochs,
                validation_data=(val_images[..., None] / 255.0, val_images[..., None] / 255.0),
                callbacks=[keras.callbacks.EarlyStopping(patience=1)],
                verbose=0,
            )
            p_article = model.predict(val_images[..., None] / 255.0, batch_size=1024, verbose=0).reshape(
                len(y_val), -1
            )
            add(
                data,
                "article conv (exact setup)",
                256,
                {"val_bce": bce(p_article, y_val), "val_mse_01": float(np.mean((p_article - y_val) ** 2))},
                f"{len(history.history['loss'])} epochs (cap {args.article_conv_epochs}), {time.time() - started:.0f} s",
            )
            article_latent = encoder.predict(val_images[:8, ..., None] / 255.0, verbose=0)[..., 0]

            flat_train = train_images.reshape(len(train_images), -1)
            flat_val = val_images.reshape(len(val_images), -1)
            config = TrainingConfig(model="conv", epochs=args.conv_epochs, seed=args.seed)
            reconstruct, result, seconds = fit_autoenc(
                config, flat_train, flat_val, workdir, "conv", sizes=[784], shape=(28, 28, 1)
            )
            p_conv = reconstruct(flat_val) / 255.0
            conv_latent = config.resolved_latent_dim(784)
            add(
                data,
                "autoenc conv (defaults, bce)",
                conv_latent,
                {"val_bce": bce(p_conv, y_val), "val_mse_01": float(np.mean((p_conv - y_val) ** 2))},
                f"{len(result.loss)} epochs (cap {args.conv_epochs}), {seconds:.0f} s",
            )
            for k in (conv_latent, 256):
                p = np.clip(pca_reconstruct(flat_train, k)(flat_val) / 255.0, 0, 1)
                add(
                    data,
                    "PCA (z-scored pixels)",
                    k,
                    {"val_bce": bce(p, y_val), "val_mse_01": float(np.mean((p - y_val) ** 2))},
                )

            # 4. VAE samples and the three-row figure.
            config = TrainingConfig(
                model="vae", loss="bce", latent_dim=8, epochs=args.vae_epochs, seed=args.seed
            )
            reconstruct, result, seconds = fit_autoenc(
                config, flat_train, flat_val, workdir, "vae", sizes=[784]
            )
            p_vae = reconstruct(flat_val) / 255.0
            add(
                data,
                "autoenc vae (latent 8, bce)",
                8,
                {"val_bce": bce(p_vae, y_val), "val_mse_01": float(np.mean((p_vae - y_val) ** 2))},
                f"{len(result.loss)} epochs (cap {args.vae_epochs}), {seconds:.0f} s",
            )
            from autoenc.sampling import generate

            normalizer = Normalizer.from_stats(MomentStats.from_array(flat_train), "minmax", sizes=[784])
            _, samples = generate(result.model, normalizer, 64, seed=args.seed)
            grid_png(samples.reshape(64, 28, 28) / 255.0, 8, 8, os.path.join(args.out, "vae_samples.png"))
            # The article's 16x16 latent, scaled to [0, 1] and centred on a 28x28 tile.
            latent_pad = np.zeros((8, 28, 28))
            latent_pad[:, 6:22, 6:22] = article_latent / max(float(article_latent.max()), 1e-9)
            figure = np.concatenate(
                [
                    val_images[:8] / 255.0,
                    latent_pad,
                    p_article[:8].reshape(8, 28, 28),
                    p_conv[:8].reshape(8, 28, 28),
                ]
            )
            grid_png(figure, 4, 8, os.path.join(args.out, "three_rows.png"), scale=3)

        if "sequences" in sections:
            sequence_kinds(args, workdir, add)

    print(f"\nAll model kinds, one run ({time.time() - run_started:.0f} s)")
    print(f"{'data':34} {'method':30} {'latent':>7}  figures")
    for data, method, latent, figures, note in rows:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in figures.items())
        print(f"{data:34} {method:30} {latent!s:>7}  {shown}" + (f"  [{note}]" if note else ""))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    if "fmnist" in sections:
        print(f"figures: {args.out}/vae_samples.png, {args.out}/three_rows.png")


if __name__ == "__main__":
    main()
