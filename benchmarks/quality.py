"""Quality check on the article's dataset, latent dimension 1, over several seeds.

Compares, on the same deterministic train/validation split per seed:

(a) the article's Keras model and training setup: dense 4 -> 100-100-100 -> 1 ->
    100-100-100 -> 4 (relu hidden layers, linear latent and output), raw
    (unnormalized) inputs, Adam lr 1e-4, MSE, batch 32, EarlyStopping(patience=10)
    on validation loss;
(b) ``autoenc train`` with its defaults (only ``--latent_dim 1`` given), run
    through the real training pipeline;
(c) PCA with one component on the z-scored training rows.

For each it prints the median and the range over seeds of the validation MSE in
raw units and of the largest absolute error over the whole of X, beside the
article's 0.0276 and 0.897.

Usage:
    python benchmarks/quality.py                 # 5 seeds, 10,000 rows
    python benchmarks/quality.py --seeds 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from autoenc.artifact import load_artifact  # noqa: E402
from autoenc.datasets import FEATURES, article_table  # noqa: E402
from autoenc.validation import validation_mask  # noqa: E402

ARTICLE = {"val_mse": 0.0276, "max_abs_error": 0.897}


def article_model(x_train, x_val, seed):
    """(a): the article's model and training, on raw units."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    h = inputs
    for _ in range(3):
        h = keras.layers.Dense(100, activation="relu")(h)
    h = keras.layers.Dense(1)(h)
    for _ in range(3):
        h = keras.layers.Dense(100, activation="relu")(h)
    model = keras.Model(inputs, keras.layers.Dense(4)(h))
    model.compile(keras.optimizers.Adam(1e-4), "mse")
    history = model.fit(
        x_train,
        x_train,
        validation_data=(x_val, x_val),
        epochs=2000,
        batch_size=32,
        verbose=0,
        callbacks=[keras.callbacks.EarlyStopping(patience=10)],
    )
    return lambda x: model.predict(x, batch_size=4096, verbose=0), len(history.history["loss"])


def autoenc_model(data_path, seed, workdir, extra_args=()):
    """(b): autoenc train with its defaults, through the pipeline."""
    from autoenc_beam import train

    train.run(
        [
            f"--input={data_path}",
            f"--model_dir={workdir}/m{seed}",
            "--key_columns=id",
            f"--features={','.join(FEATURES)}",
            "--latent_dim=1",
            f"--seed={seed}",
            *extra_args,
        ],
        save_main_session=False,
    )
    artifact = load_artifact(f"{workdir}/m{seed}")
    norm = artifact.metadata.normalization

    def reconstruct(x):
        z = artifact.model.predict(norm.transform(x), batch_size=4096, verbose=0)
        return norm.inverse_transform(z)

    return reconstruct, len(artifact.metadata.history["loss"])


def pca_model(x_train):
    """(c): PCA(1) on z-scored training rows."""
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    _, _, vt = np.linalg.svd((x_train - mean) / std, full_matrices=False)
    v = vt[:1]

    def reconstruct(x):
        z = (x - mean) / std
        return (z @ v.T @ v) * std + mean

    return reconstruct, 0


def evaluate(reconstruct, x, val):
    r = reconstruct(x)
    return {
        "val_mse": float(np.mean((r[val] - x[val]) ** 2)),
        "max_abs_error": float(np.max(np.abs(r - x))),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--methods", default="a,b,c", help="which of a,b,c to run")
    parser.add_argument("--json", default=None, help="also write the per-seed figures here")
    parser.add_argument(
        "--train_arg",
        action="append",
        default=[],
        help="extra option for (b)'s autoenc train, e.g. --train_arg=--n_init=8 (repeatable)",
    )
    parser.add_argument("--first_seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("autoenc").setLevel(logging.INFO)
    methods = args.methods.split(",")
    results = {m: [] for m in methods}
    with tempfile.TemporaryDirectory() as workdir:
        data_path = os.path.join(workdir, "article.parquet")
        table = article_table(args.rows, seed=0)
        pq.write_table(table, data_path)
        x = np.column_stack([table[c].to_numpy() for c in FEATURES])
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            # The split autoenc train uses for this seed; (a) and (c) use it too.
            # The file's name below its directory, as autoenc train's split hashes it.
            val = validation_mask("article.parquet", np.arange(len(x)), seed=seed, fraction=0.2)
            for m in methods:
                started = time.time()
                if m == "a":
                    reconstruct, epochs = article_model(
                        x[~val].astype("float32"), x[val].astype("float32"), seed
                    )
                elif m == "b":
                    reconstruct, epochs = autoenc_model(data_path, seed, workdir, args.train_arg)
                else:
                    reconstruct, epochs = pca_model(x[~val])
                figures = evaluate(reconstruct, x, val) | {"epochs": epochs, "seconds": time.time() - started}
                results[m].append(figures)
                print(f"seed {seed} ({m}): {json.dumps(figures)}", file=sys.stderr, flush=True)
    names = {
        "a": "(a) article's model + training",
        "b": "(b) autoenc train, defaults",
        "c": "(c) PCA, 1 component",
    }
    print(f"\nArticle's dataset, {args.rows} rows, latent 1, {args.seeds} seeds (median [min, max])")
    print(f"{'method':34} {'validation MSE (raw units)':>32} {'largest |error| over X':>30}")
    print(f"{'article (one run)':34} {ARTICLE['val_mse']:>32.4g} {ARTICLE['max_abs_error']:>30.4g}")
    for m in methods:
        cells = []
        for key in ("val_mse", "max_abs_error"):
            v = np.array([r[key] for r in results[m]])
            cells.append(f"{np.median(v):.4g} [{v.min():.4g}, {v.max():.4g}]")
        print(f"{names[m]:34} {cells[0]:>32} {cells[1]:>30}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
