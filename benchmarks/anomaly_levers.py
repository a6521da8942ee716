"""Training and scoring levers on the anomaly panel's splits, in one process.

Fits ``autoenc.Autoencoder`` (the in-memory estimator, its defaults plus
``--params``) on the splits ``benchmarks/anomaly.py`` draws, clean and
contaminated, and prints the median ROC-AUC over the seeds of each autoenc
score: the reconstruction error, the latent distance and ``total_distance``.
Much faster than the panel (no process per fit), so a lever can be compared
on every set before the panel's single run decides; its validation rows are
drawn by position, the command line's by key, so single figures differ from
the panel's.

Usage:
    python benchmarks/anomaly_levers.py                          # defaults, 3 seeds
    python benchmarks/anomaly_levers.py --params '{"trim": 0.2}' --json trim.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import anomaly  # noqa: E402  (the panel's splits)

SCORES = ("reconstruction_error", "latent_distance", "total_distance")
SHORT = {"reconstruction_error": "error", "latent_distance": "latent", "total_distance": "total"}


def run_split(split, setting: str, seed: int, params: dict) -> dict:
    """One fit and its test rows' ROC-AUC per score."""
    from sklearn.metrics import roc_auc_score

    from autoenc import Autoencoder

    started = time.perf_counter()
    estimator = Autoencoder(seed=seed, **params).fit(split.training_rows(setting, seed).astype(np.float64))
    scores = estimator.scores(split.x_test.astype(np.float64))
    row = {"seconds": round(time.perf_counter() - started, 1)}
    for name in SCORES:
        values = getattr(scores, name)
        if values is not None:
            row[name] = float(roc_auc_score(split.y_test, values))
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default=",".join(anomaly.PANEL), help="Comma-separated panel sets.")
    parser.add_argument("--settings", default=",".join(anomaly.SETTINGS))
    parser.add_argument("--seeds", type=int, default=3, help="Seeds 0..N-1.")
    parser.add_argument("--params", default="{}", help="JSON keyword arguments for autoenc.Autoencoder.")
    parser.add_argument("--json", default=None, help="Also write every run's figures here.")
    args = parser.parse_args(argv)
    params = json.loads(args.params)
    sets, settings = args.sets.split(","), args.settings.split(",")
    unknown = set(sets) - set(anomaly.TABULAR)
    if unknown or set(settings) - set(anomaly.SETTINGS):
        parser.error(f"unknown sets or settings: {sorted(unknown)} {settings}")
    runs = []
    for name in sets:
        split_of, available, _ = anomaly.TABULAR[name]
        why = available()
        if why:
            print(f"{name} skipped: {why}", file=sys.stderr)
            continue
        for seed in range(args.seeds):
            split = split_of(seed)
            for setting in settings:
                row = {
                    "set": name,
                    "seed": seed,
                    "setting": setting,
                    **run_split(split, setting, seed, params),
                }
                print(json.dumps(row), file=sys.stderr, flush=True)
                runs.append(row)
    print(f"median ROC-AUC of {args.seeds} seeds, autoenc.Autoencoder(**{params})")
    print("set".ljust(14) + "".join(f"{s + ' ' + SHORT[k]:>20}" for s in settings for k in SCORES))
    for name in dict.fromkeys(r["set"] for r in runs):
        cells = []
        for setting in settings:
            got = [r for r in runs if r["set"] == name and r["setting"] == setting]
            cells += [
                f"{statistics.median(r[k] for r in got):>20.3f}" if all(k in r for r in got) else " " * 20
                for k in SCORES
            ]
        print(name.ljust(14) + "".join(cells))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"params": params, "seeds": args.seeds, "runs": runs}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
