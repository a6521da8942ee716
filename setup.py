"""Build script kept for Beam's ``--setup_file``: Beam runs ``python setup.py
sdist`` (or ``python -m build --sdist``) on it to ship autoenc to its workers.

Everything about the package (metadata, dependencies, extras, the ``autoenc``
command) is declared in ``pyproject.toml`` beside this file.
"""

from pathlib import Path

from setuptools import setup

if not (Path(__file__).resolve().parent / "pyproject.toml").is_file():
    # Without it setuptools would build a package named UNKNOWN with no
    # dependencies and no command, and say nothing.
    raise SystemExit(
        "setup.py: pyproject.toml is missing beside setup.py; it holds autoenc's metadata. "
        "Copy both (and README.md, LICENSE) when installing from a copy of the sources."
    )

setup()
