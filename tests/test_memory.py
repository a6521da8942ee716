"""Memory is bounded in bytes, not rows: wide rows (a 224x224x3 image is
602 KB as float32) are read, validated and scored in batches whose row count
comes from the row's width, reading only the columns the job needs."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.pipeline
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (224, 224, 3)
WIDTH = int(np.prod(SHAPE))


def image_table(n: int, seed: int) -> pa.Table:
    """``n`` rows of a 224x224x3 float32 image (602 KB each in memory; few
    distinct values, so the file is small) and an unread 1 MB text column."""
    rng = np.random.default_rng(seed)
    pixels = (rng.integers(0, 4, size=(n, WIDTH)) / 4).astype(np.float32)
    images = pa.ListArray.from_arrays(
        pa.array(np.arange(0, (n + 1) * WIDTH, WIDTH, dtype=np.int32)), pa.array(pixels.ravel())
    )
    return pa.table(
        {
            "id": [f"img-{i:05d}" for i in range(n)],
            "image": images,
            "notes": ["x" * 2**20 if i == 0 else "" for i in range(n)],
        }
    )


def test_scoring_600_kb_rows_keeps_peak_memory_under_2_gb(tmp_path):
    from autoenc_beam import train

    pq.write_table(image_table(40, seed=0), tmp_path / "train.parquet", compression="zstd")
    train.run(
        [
            f"--input={tmp_path / 'train.parquet'}",
            f"--model_dir={tmp_path / 'm'}",
            "--key_columns=id",
            "--features=image",
            "--shape=image=224,224,3",
            "--hidden_units=8",
            "--latent_dim=4",
            "--epochs=1",
            "--n_init=1",
        ]
    )
    n = 1200  # one row group of 1,200 rows: 722 MB of images in memory
    pq.write_table(image_table(n, seed=1), tmp_path / "score.parquet", compression="zstd", row_group_size=n)
    # The peak of the scoring process itself: VmHWM of its own memory map
    # (getrusage's ru_maxrss would carry the forking test process's size over exec).
    code = (
        "import sys\n"
        "from autoenc_beam import score\n"
        "summary = score.run(sys.argv[1:])\n"
        "print('SCORED', summary['counts']['scored'])\n"
        "status = open('/proc/self/status').read().splitlines()\n"
        "print('PEAK_KB', next(line.split()[1] for line in status if line.startswith('VmHWM')))\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            f"--input={tmp_path / 'score.parquet'}",
            f"--model_dir={tmp_path / 'm'}",
            f"--output={tmp_path / 'out'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(
        line.split(" ", 1) for line in done.stdout.splitlines() if line.startswith(("SCORED", "PEAK"))
    )
    assert int(lines["SCORED"]) == n
    peak_gb = int(lines["PEAK_KB"]) / 2**20
    print(f"peak RSS scoring {n} rows of 602 KB: {peak_gb:.2f} GB")
    assert peak_gb < 2.0, peak_gb
