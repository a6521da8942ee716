"""Anomaly-detection quality: autoenc beside PyOD's AutoEncoder and an IsolationForest.

One command prints ROC-AUC and PR-AUC (average precision) of three detectors,
all measured in the same run on the same train/test split, each fed the same
arrays:

* breast cancer (scikit-learn's ``load_breast_cancer``, 569 rows x 30 features):
  anomaly = malignant (212 rows). Per seed the benign rows (357) are shuffled;
  2/3 of them are the training rows, the test rows are the other 1/3 of the
  benign rows and all malignant ones. Figures are the median over the seeds,
  with their range.
* Fashion-MNIST (the offline Debian package ``dataset-fashion-mnist``): one
  class is normal. The training rows are that class's 6,000 training images;
  the test rows are the whole 10,000-image test set, anomaly = any other class.
  One row per class (one seed, ``--fmnist_seeds`` for more). Skipped, with a
  message saying how to install it, when the package's files are missing.

The detectors, each with its defaults except a seed:

* autoenc: the rows are written to Parquet (tabular: one float64 column per
  feature, ``f00``..``f29``; images: one ``image`` column of
  ``fixed_size_list<float32, 784>`` holding pixel / 255) with an ``id`` column
  (and ``label``, 1 = anomaly, in the test file), then ``python -m
  pipelines.cli train --key_columns id --split_by key --seed SEED`` (images:
  ``--model conv --shape 28,28,1``; the train/validation split hashes the id,
  so it does not depend on ``--out``) and ``python -m pipelines.cli score
  --passthrough`` run as child processes;
  the score is ``reconstruction_error`` read back from ``scores/`` and matched
  to the test rows by ``id``; the same run's ``latent_distance`` column is a
  second autoenc row, "autoenc latent distance". autoenc normalizes the
  features itself.
  ``--autoenc_args`` appends arguments to ``train`` for experiments. Its time
  is the wall time of both child processes (interpreter start and Beam
  pipeline set-up included).
* PyOD ``AutoEncoder`` (torch): ``random_state=SEED``, ``verbose=0`` (no
  progress bars), defaults otherwise; score = ``decision_function(test)``.
  It is given the unscaled features (images: the same 784 values / 255,
  flattened): with its default ``preprocessing=True`` it z-scores every
  feature with the training rows' mean and standard deviation itself, which
  is what a StandardScaler fitted on the training rows would do, so scaling
  beforehand would change nothing (a second z-scoring is the identity) and
  is skipped. On Fashion-MNIST this default divides pixels that are constant
  in the training class by std + 1e-8; that is PyOD's default behavior and is
  kept.
* scikit-learn ``IsolationForest``: ``random_state=SEED``, defaults otherwise,
  on tabular features standardized by a StandardScaler fitted on the training
  rows (trees are insensitive to that scaling; done for uniformity); images
  as the flattened values / 255. Score = ``-score_samples(test)``.

Higher scores mean more anomalous for all of them. After the table, one line
per dataset says whether autoenc's ROC-AUC and PR-AUC are at or above PyOD's
AutoEncoder ("met" or "MISSED"), and one more for its latent distance: on
breast cancer the medians over the seeds, on Fashion-MNIST the means over the
classes run. Every figure goes to
``OUT/anomaly.json``.

PyOD rows need ``pip install -r benchmarks/requirements-pyod.txt`` (PyOD and
PyTorch, a download of a few GB) and are skipped without them. Fashion-MNIST
needs ``sudo apt-get install -y dataset-fashion-mnist``.

Usage:
    python benchmarks/anomaly.py --out anomaly-out                       # all of it: hours on 2 cores
    python benchmarks/anomaly.py --classes 0,1,2 --out anomaly-out       # breast cancer + 3 classes
    python benchmarks/anomaly.py --quick --out anomaly-quick             # a smoke run (1 seed, 2 classes, 5 epochs)
    python benchmarks/anomaly.py --datasets breast_cancer --autoenc_args='--latent_dim 4'

``--autoenc_src`` runs the autoenc CLI of another source tree (say a clean
export of a commit while the checkout holds unfinished edits).

Time on 2 CPU cores: breast cancer about 4 minutes for 5 seeds (autoenc about
35-50 s a seed, mostly process and pipeline start-up). Fashion-MNIST is
dominated by autoenc's conv training with its defaults (early stopping, patience
20, at about 7-9 s an epoch): 16-18 minutes a class (108-116 epochs for classes
0-2). PyOD's AutoEncoder takes 10-35 s a class, the IsolationForest under a
second.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
FMNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
METHODS = ("autoenc", "pyod_ae", "iforest")
METHOD_NAMES = {
    "autoenc": "autoenc",
    "autoenc_latent": "autoenc latent distance",
    "pyod_ae": "PyOD AutoEncoder",
    "iforest": "IsolationForest",
}
QUICK_EPOCHS = 5


# ----------------------------------------------------------------------------- data


def breast_cancer_split(seed: int):
    """Train on 2/3 of the benign rows; test on the other 1/3 and every malignant row.

    Returns (x_train, x_test, y_test, test_ids) with y_test 1 for malignant.
    """
    from sklearn.datasets import load_breast_cancer

    x, target = load_breast_cancer(return_X_y=True)
    benign = np.flatnonzero(target == 1)
    malignant = np.flatnonzero(target == 0)
    benign = np.random.default_rng(seed).permutation(benign)
    n_train = len(benign) * 2 // 3
    train_idx, test_idx = benign[:n_train], np.concatenate([benign[n_train:], malignant])
    y_test = (target[test_idx] == 0).astype(np.int64)
    return x[train_idx], x[test_idx], y_test, test_idx.astype(np.int64)


def fmnist_files() -> dict[str, str]:
    return {
        f"{part}_{what}": os.path.join(FMNIST_DIR, f"{part}-{what}-{kind}-ubyte.gz")
        for part in ("train", "t10k")
        for what, kind in (("images", "idx3"), ("labels", "idx1"))
    }


def _idx(path: str, header: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=header)


def load_fmnist():
    """(train images, train labels, test images, test labels); images uint8 (n, 28, 28)."""
    files = fmnist_files()
    out = []
    for part in ("train", "t10k"):
        images = _idx(files[f"{part}_images"], 16).reshape(-1, 28, 28)
        labels = _idx(files[f"{part}_labels"], 8)
        assert len(images) == len(labels), (part, len(images), len(labels))
        out += [images, labels]
    return tuple(out)


def write_parquet(path: str, x: np.ndarray, ids: np.ndarray, labels: np.ndarray | None, image: bool) -> None:
    """Tabular: f00.. float64 columns; images: one fixed_size_list<float32, 784> column, values / 255."""
    columns = {"id": pa.array(ids, pa.int64())}
    if image:
        flat = (x.reshape(len(x), -1).astype(np.float32) / np.float32(255.0)).ravel()
        columns["image"] = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), 784)
    else:
        for j in range(x.shape[1]):
            columns[f"f{j:02d}"] = pa.array(x[:, j].astype(np.float64), pa.float64())
    if labels is not None:
        columns["label"] = pa.array(labels, pa.int64())
    pq.write_table(pa.table(columns), path)


# ----------------------------------------------------------------------------- methods


def _run(cmd: list[str], log: str, src: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    with open(log, "w") as f:
        f.write(f"(cd {shlex.quote(src)} && {shlex.join(cmd)})\n\n")
        f.flush()
        proc = subprocess.run(cmd, cwd=src, env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        with open(log) as f:
            tail = f.read()[-4000:]
        raise RuntimeError(f"{shlex.join(cmd)} failed with {proc.returncode}; log {log}:\n{tail}")


def run_autoenc(work, x_train, x_test, y_test, test_ids, image, seed, epochs, extra, src):
    """Fit with ``autoenc train``, score with ``autoenc score``; errors in test order, seconds."""
    os.makedirs(work, exist_ok=True)
    train_path = os.path.join(work, "train.parquet")
    test_path = os.path.join(work, "test.parquet")
    write_parquet(train_path, x_train, np.arange(len(x_train)), None, image)
    write_parquet(test_path, x_test, test_ids, y_test, image)
    model_dir, out_dir = os.path.join(work, "model"), os.path.join(work, "scored")
    for stale in (model_dir, out_dir):  # a re-run into the same --out starts afresh
        shutil.rmtree(stale, ignore_errors=True)
    train = [sys.executable, "-m", "pipelines.cli", "train", "--input", train_path]
    train += ["--model_dir", model_dir, "--key_columns", "id", "--split_by", "key", "--seed", str(seed)]
    if image:
        train += ["--model", "conv", "--shape", "28,28,1"]
    if epochs:
        train += ["--epochs", str(epochs)]
    train += shlex.split(extra)
    score = [sys.executable, "-m", "pipelines.cli", "score", "--input", test_path]
    score += ["--model_dir", model_dir, "--output", out_dir, "--passthrough"]
    started = time.perf_counter()
    _run(train, os.path.join(work, "train.log"), src)
    _run(score, os.path.join(work, "score.log"), src)
    seconds = time.perf_counter() - started

    files = sorted(glob.glob(os.path.join(out_dir, "scores", "*.parquet")))
    wanted = ["id", "label", "reconstruction_error", "latent_distance"]
    scores = pa.concat_tables(
        [pq.read_table(f, columns=[c for c in wanted if c in pq.read_schema(f).names]) for f in files]
    )
    rejected = sum(
        pq.ParquetFile(f).metadata.num_rows for f in glob.glob(os.path.join(out_dir, "rejected", "*"))
    )
    assert rejected == 0, f"autoenc rejected {rejected} test rows; see {out_dir}/rejected"
    assert scores.num_rows == len(test_ids), f"autoenc scored {scores.num_rows} rows of {len(test_ids)}"
    ids = scores["id"].to_numpy()
    order = np.argsort(ids)
    position = np.searchsorted(ids[order], test_ids)
    assert np.array_equal(ids[order][position], test_ids), "score ids do not match the test ids"
    error = scores["reconstruction_error"].to_numpy()[order][position]
    label = scores["label"].to_numpy()[order][position]
    assert np.array_equal(label, y_test), "passed-through labels do not match"
    assert np.all(np.isfinite(error)), "non-finite reconstruction errors"
    meta = {}
    if "latent_distance" in scores.column_names:  # autoenc before it had none
        meta["latent_distance"] = scores["latent_distance"].to_numpy()[order][position]
    with open(os.path.join(work, "train.log")) as f:
        trained = re.search(r"best epoch (\d+) of (\d+)", f.read())
    if trained:
        meta["best_epoch"], meta["epochs_run"] = int(trained.group(1)), int(trained.group(2))
    summary = os.path.join(out_dir, "summary.json")
    if os.path.exists(summary):
        with open(summary) as f:
            meta["score_counts"] = json.load(f).get("counts")
    return error, seconds, meta


def run_pyod(x_train, x_test, seed, epochs):
    from pyod.models.auto_encoder import AutoEncoder

    kwargs = {"random_state": seed, "verbose": 0}
    if epochs:
        kwargs["epoch_num"] = epochs
    started = time.perf_counter()
    clf = AutoEncoder(**kwargs)
    clf.fit(x_train)
    score = clf.decision_function(x_test)
    return np.asarray(score, dtype=np.float64), time.perf_counter() - started, {}


def run_iforest(x_train, x_test, seed, image):
    from sklearn.ensemble import IsolationForest
    from sklearn.preprocessing import StandardScaler

    started = time.perf_counter()
    if not image:
        scaler = StandardScaler().fit(x_train)
        x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    clf = IsolationForest(random_state=seed).fit(x_train)
    score = -clf.score_samples(x_test)
    return score, time.perf_counter() - started, {}


def have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("autoenc", "tensorflow", "keras", "apache-beam", "pyod", "torch", "scikit-learn", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


# ----------------------------------------------------------------------------- evaluation


def evaluate(methods, work, x_train, x_test, y_test, test_ids, image, seed, args) -> dict:
    """Every method on one split: {method: {roc_auc, pr_auc, seconds} or {skipped}}."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    flat_train = x_train.reshape(len(x_train), -1).astype(np.float64)
    flat_test = x_test.reshape(len(x_test), -1).astype(np.float64)
    if image:
        flat_train, flat_test = flat_train / 255.0, flat_test / 255.0
    epochs = QUICK_EPOCHS if args.quick else None
    result = {}
    for method in methods:
        try:
            if method == "autoenc":
                score, seconds, meta = run_autoenc(
                    os.path.join(work, "autoenc"),
                    x_train,
                    x_test,
                    y_test,
                    test_ids,
                    image,
                    seed,
                    epochs,
                    args.autoenc_args,
                    args.autoenc_src,
                )
            elif method == "pyod_ae":
                score, seconds, meta = run_pyod(flat_train, flat_test, seed, epochs)
            else:
                score, seconds, meta = run_iforest(flat_train, flat_test, seed, image)
        except Exception as exc:  # one failing method must not lose the others' figures
            print(f"anomaly: {method} failed: {exc}", file=sys.stderr, flush=True)
            result[method] = {"failed": str(exc)[-2000:]}
            continue
        # autoenc's score run also gives the latent distance: a second autoenc row.
        latent = meta.pop("latent_distance", None)
        for name, values in ((method, score), ("autoenc_latent", latent)):
            if values is None:
                continue
            result[name] = dict(
                roc_auc=float(roc_auc_score(y_test, values)),
                pr_auc=float(average_precision_score(y_test, values)),
                seconds=seconds,
                **(meta if name == method else {}),
            )
            r = result[name]
            epochs_note = f" (best epoch {r['best_epoch']} of {r['epochs_run']})" if "epochs_run" in r else ""
            print(
                f"  {name}: ROC-AUC {r['roc_auc']:.4f}  PR-AUC {r['pr_auc']:.4f}  {seconds:.1f} s{epochs_note}",
                file=sys.stderr,
                flush=True,
            )
    return result


def aggregate(runs: list[dict], methods, how: str) -> dict:
    """Per method: the median (or mean) of each figure over runs, with min and max."""
    out = {}
    for method in methods:
        ok = [r[method] for r in runs if "roc_auc" in r.get(method, {})]
        if not ok:
            out[method] = None
            continue
        out[method] = {"runs": len(ok), "of": len(runs)}
        for key in ("roc_auc", "pr_auc", "seconds"):
            values = [r[key] for r in ok]
            center = statistics.median(values) if how == "median" else statistics.fmean(values)
            out[method][key] = {how: center, "min": min(values), "max": max(values)}
    return out


def _fig(cell, key, how, spread):
    if cell is None:
        return "-"
    v = cell[key]
    text = f"{v[how]:.3f}"
    if spread and v["min"] != v["max"]:
        text += f" ({v['min']:.3f}-{v['max']:.3f})"
    return text


def print_table(rows: list[dict], methods) -> None:
    """rows: {dataset, case, how, spread, figures: aggregate()}."""
    head = ["dataset", "case"]
    for m in methods:
        name = METHOD_NAMES[m]
        head += [f"{name} ROC-AUC", f"{name} PR-AUC", f"{name} s"]
    lines = [head]
    for row in rows:
        line = [row["dataset"], row["case"]]
        for m in methods:
            cell = row["figures"].get(m)
            line += [
                _fig(cell, "roc_auc", row["how"], row["spread"]),
                _fig(cell, "pr_auc", row["how"], row["spread"]),
                "-" if cell is None else f"{cell['seconds'][row['how']]:.1f}",
            ]
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for k, line in enumerate(lines):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))


def verdict(figures: dict, how: str, method: str = "autoenc") -> dict:
    ours, theirs = figures.get(method), figures.get("pyod_ae")
    if ours is None or theirs is None:
        return {"met": None, "note": f"{METHOD_NAMES[method]} or PyOD AutoEncoder missing"}
    out = {}
    for key in ("roc_auc", "pr_auc"):
        a, b = ours[key][how], theirs[key][how]
        out[key] = {"autoenc": a, "pyod_ae": b, "met": a >= b}
    out["met"] = all(out[k]["met"] for k in ("roc_auc", "pr_auc"))
    return out


def _verdict_line(dataset: str, what: str, v: dict, method: str = "autoenc") -> str:
    if v.get("met") is None:
        return f"{dataset}: no verdict ({v.get('note', '')})"
    parts = []
    for key, name in (("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC")):
        r = v[key]
        mark = "met" if r["met"] else "MISSED"
        parts.append(f"{name} {r['autoenc']:.3f} vs {r['pyod_ae']:.3f} {mark}")
    return f"{dataset} ({what}): {METHOD_NAMES[method]} >= PyOD AutoEncoder? " + "; ".join(parts)


def verdicts_of(figures: dict, how: str) -> dict:
    """``verdict`` of autoenc's reconstruction error, and of its latent distance when measured."""
    out = {"autoenc": verdict(figures, how)}
    if figures.get("autoenc_latent"):
        out["autoenc_latent"] = verdict(figures, how, "autoenc_latent")
    return out


def verdict_lines(dataset: str, what: str, vs: dict) -> list[str]:
    return [_verdict_line(dataset, what, v, method) for method, v in vs.items()]


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="Working directory (data, models, logs, anomaly.json).")
    parser.add_argument(
        "--datasets",
        default="breast_cancer,fashion_mnist",
        help="Comma-separated: breast_cancer, fashion_mnist.",
    )
    parser.add_argument("--seeds", type=int, default=5, help="Breast cancer: seeds 0..N-1, one split each.")
    parser.add_argument(
        "--fmnist_seeds", type=int, default=1, help="Fashion-MNIST: seeds 0..N-1 per class (slow)."
    )
    parser.add_argument(
        "--classes", default="0,1,2,3,4,5,6,7,8,9", help="Fashion-MNIST: comma-separated normal classes."
    )
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="Comma-separated subset of: " + ", ".join(METHODS) + "."
    )
    parser.add_argument("--autoenc_args", default="", help="Extra arguments for 'autoenc train'.")
    parser.add_argument(
        "--autoenc_src",
        default=ROOT,
        help="Source tree whose pipelines.cli is run (working directory and PYTHONPATH of the "
        "autoenc child processes), e.g. an export of another commit. Default: this checkout.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"A smoke run: 1 seed, 2 classes, {QUICK_EPOCHS} epochs for autoenc and PyOD.",
    )
    args = parser.parse_args(argv)
    args.autoenc_src = os.path.abspath(args.autoenc_src)
    datasets = [d for d in args.datasets.split(",") if d]
    unknown = set(datasets) - {"breast_cancer", "fashion_mnist"}
    if unknown:
        parser.error(f"unknown datasets: {sorted(unknown)}")
    classes = [int(c) for c in args.classes.split(",") if c != ""]
    methods = [m for m in args.methods.split(",") if m]
    if set(methods) - set(METHODS):
        parser.error(f"unknown methods: {sorted(set(methods) - set(METHODS))}")
    if args.quick:
        args.seeds, args.fmnist_seeds, classes = 1, 1, classes[:2]
    notes = []
    if "pyod_ae" in methods and not (have("pyod") and have("torch")):
        methods.remove("pyod_ae")
        notes.append(
            "PyOD AutoEncoder skipped: pyod or torch is not importable "
            "(pip install -r benchmarks/requirements-pyod.txt)."
        )
        print(f"anomaly: {notes[-1]}", file=sys.stderr)
    # The figures shown: the methods run, autoenc's latent distance beside autoenc.
    shown = [x for m in methods for x in ((m, "autoenc_latent") if m == "autoenc" else (m,))]

    out = args.out or tempfile.mkdtemp(prefix="autoenc-anomaly-")
    os.makedirs(out, exist_ok=True)
    print(f"anomaly: working in {out}", file=sys.stderr)
    started = time.time()
    report = {
        "config": {
            "datasets": datasets,
            "seeds": args.seeds,
            "fmnist_seeds": args.fmnist_seeds,
            "classes": classes,
            "methods": methods,
            "autoenc_args": args.autoenc_args,
            "autoenc_src": os.path.abspath(args.autoenc_src),
            "quick": args.quick,
            "epochs": QUICK_EPOCHS if args.quick else "defaults",
        },
        "versions": versions(),
        "datasets": {},
        "notes": notes,
    }
    table_rows, verdicts = [], []
    json_path = os.path.join(out, "anomaly.json")

    def save(partial: bool) -> None:
        """(Re)writes anomaly.json: after every run (partial) and at the end."""
        report["partial"] = partial
        report["wall_s"] = time.time() - started
        with open(json_path + ".tmp", "w") as f:
            json.dump(report, f, indent=2)
        os.replace(json_path + ".tmp", json_path)

    if "breast_cancer" in datasets:
        runs = []
        for seed in range(args.seeds):
            print(f"anomaly: breast_cancer seed {seed}", file=sys.stderr, flush=True)
            x_train, x_test, y_test, test_ids = breast_cancer_split(seed)
            work = os.path.join(out, "breast_cancer", f"seed{seed}")
            runs.append(evaluate(methods, work, x_train, x_test, y_test, test_ids, False, seed, args))
            report["datasets"]["breast_cancer"] = {"runs": {str(s): r for s, r in enumerate(runs)}}
            save(partial=True)
        figures = aggregate(runs, shown, "median")
        v = verdicts_of(figures, "median")
        report["datasets"]["breast_cancer"] = {
            "split": {
                "train": len(x_train),
                "test": len(y_test),
                "test_anomalies": int(y_test.sum()),
            },
            "runs": {str(s): r for s, r in enumerate(runs)},
            "median": figures,
            "verdict": v,
        }
        table_rows.append(
            dict(
                dataset="breast_cancer",
                case=f"median of {args.seeds} seeds",
                how="median",
                spread=True,
                figures=figures,
            )
        )
        verdicts += verdict_lines("breast_cancer", f"median of {args.seeds} seeds", v)

    if "fashion_mnist" in datasets:
        missing = [p for p in fmnist_files().values() if not os.path.exists(p)]
        if missing:
            message = (
                f"Fashion-MNIST skipped: {len(missing)} of its 4 files missing in {FMNIST_DIR} "
                f"({', '.join(os.path.basename(m) for m in missing)}); install them with "
                "'sudo apt-get install -y dataset-fashion-mnist' (Debian/Ubuntu)."
            )
            print(f"anomaly: {message}", file=sys.stderr)
            notes.append(message)
            report["datasets"]["fashion_mnist"] = {"skipped": message}
            verdicts.append(message)
        else:
            train_x, train_y, test_x, test_y = load_fmnist()
            per_class = {}
            for c in classes:
                x_train = train_x[train_y == c]
                y_test = (test_y != c).astype(np.int64)
                test_ids = np.arange(len(test_x), dtype=np.int64)
                runs = []
                for seed in range(args.fmnist_seeds):
                    print(
                        f"anomaly: fashion_mnist class {c} ({FMNIST_CLASSES[c]}) seed {seed}",
                        file=sys.stderr,
                        flush=True,
                    )
                    work = os.path.join(out, "fashion_mnist", f"class{c}-seed{seed}")
                    runs.append(evaluate(methods, work, x_train, test_x, y_test, test_ids, True, seed, args))
                    per_class[str(c)] = {"runs": {str(s): r for s, r in enumerate(runs)}}
                    report["datasets"]["fashion_mnist"] = {"classes": per_class}
                    save(partial=True)
                figures = aggregate(runs, shown, "median")
                per_class[str(c)] = {
                    "name": FMNIST_CLASSES[c],
                    "train": len(x_train),
                    "test": len(y_test),
                    "test_anomalies": int(y_test.sum()),
                    "runs": {str(s): r for s, r in enumerate(runs)},
                    "median": figures,
                }
                table_rows.append(
                    dict(
                        dataset="fashion_mnist",
                        case=f"{c} {FMNIST_CLASSES[c]}",
                        how="median",
                        spread=args.fmnist_seeds > 1,
                        figures=figures,
                    )
                )
            # the mean over classes of each class's (median over seeds) figure
            centers = [
                {
                    m: {
                        k: per_class[str(c)]["median"][m][k]["median"]
                        for k in ("roc_auc", "pr_auc", "seconds")
                    }
                    for m in shown
                    if per_class[str(c)]["median"].get(m)
                }
                for c in classes
            ]
            mean = aggregate(centers, shown, "mean") if classes else {}
            v = verdicts_of(mean, "mean") if classes else {"autoenc": {"met": None, "note": "no classes"}}
            report["datasets"]["fashion_mnist"] = {
                "classes": per_class,
                "mean_over_classes": mean,
                "verdict": v,
            }
            if classes:
                table_rows.append(
                    dict(
                        dataset="fashion_mnist",
                        case=f"mean of {len(classes)} classes",
                        how="mean",
                        spread=False,
                        figures=mean,
                    )
                )
                verdicts += verdict_lines("fashion_mnist", f"mean of {len(classes)} classes", v)

    save(partial=False)
    print()
    if table_rows:
        print_table(table_rows, [m for m in shown if any(row["figures"].get(m) for row in table_rows)])
    print()
    for line in verdicts:
        print(line)
    for note in notes:
        if note not in verdicts:
            print(note)
    if args.autoenc_args:
        print(f"autoenc train ran with extra arguments: {args.autoenc_args}")
    print(f"\ntotal {report['wall_s']:.0f} s; figures in {json_path}")
    failed = any(
        "failed" in r.get(m, {})
        for d in report["datasets"].values()
        for r in (
            list(d.get("runs", {}).values())
            + [run for cls in d.get("classes", {}).values() for run in cls["runs"].values()]
        )
        for m in methods
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
