"""setup.py must build a source distribution: Beam's --setup_file does exactly that."""

import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_sdist_holds_the_library_and_the_pipelines(tmp_path):
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (archive,) = tmp_path.glob("autoenc-*.tar.gz")
    names = {
        Path(n).relative_to(Path(n).parts[0]).as_posix()
        for n in tarfile.open(archive).getnames()
        if len(Path(n).parts) > 1
    }
    for module in (
        "autoenc/artifact.py",
        "autoenc/training.py",
        "pipelines/score.py",
        "pipelines/train.py",
        "pipelines/cli.py",
        "setup.py",
    ):
        assert module in names


def test_library_does_not_import_beam():
    code = (
        "import sys, autoenc.artifact, autoenc.training, autoenc.scoring, autoenc.tfexample, "
        "autoenc.validation; print('apache_beam' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"
