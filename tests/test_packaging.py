"""setup.py must build a source distribution: Beam's --setup_file does exactly that."""

import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

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
        "autoenc.validation, autoenc.tfrecord, autoenc.reservoir, autoenc.preprocessing, autoenc.report, "
        "autoenc.export; "
        "print('apache_beam' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "False"


def dockerfile_final_stage(path: Path) -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile's last stage, continuation lines joined."""
    text = path.read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    steps = [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from + 1 :]


@pytest.mark.slow
def test_dockerfile_install_steps_succeed_in_a_fresh_virtualenv(tmp_path):
    """Runs the Dockerfile's own WORKDIR / COPY / RUN / ENV steps (no Docker engine
    here) with a fresh virtualenv standing in for the image's Python, then checks
    the installed command and the Flex Template files the ENV names."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    root = tmp_path / "image"
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONPATH", None)
    workdir = root
    image_env = {}
    for op, args in dockerfile_final_stage(ROOT / "Dockerfile"):
        if op == "WORKDIR":
            workdir = root / args.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif op == "COPY" and not args.startswith("--from"):
            *sources, dest = args.split()
            target = workdir / dest
            for source in sources:
                src = ROOT / source
                if src.is_dir():
                    shutil.copytree(
                        src, target if dest.endswith("/") and len(sources) == 1 else target / src.name
                    )
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy(src, target / src.name)
        elif op == "RUN":
            done = subprocess.run(args, shell=True, cwd=workdir, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"RUN {args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        elif op == "ENV":
            for pair in shlex.split(args):
                name, value = pair.split("=", 1)
                image_env[name] = value
    help_text = subprocess.run(
        [str(venv / "bin" / "autoenc"), "score", "--help"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--model_dir" in help_text
    for name in ("FLEX_TEMPLATE_PYTHON_PY_FILE", "FLEX_TEMPLATE_PYTHON_SETUP_FILE"):
        assert (root / image_env[name].lstrip("/")).is_file(), name


def test_flex_template_parameters_are_options_of_the_jobs():
    from pipelines.flex_template import split_job
    from pipelines.options import check_known_args

    meta = json.loads((ROOT / "pipelines" / "flex_template_metadata.json").read_text())
    names = [p["name"] for p in meta["parameters"]]
    assert names[0] == "job" and len(set(names)) == len(names)
    values = {"job": "train", "format": "parquet"}
    job, rest = split_job([f"--{n}={values.get(n, '1')}" for n in names])
    assert job == "train" and len(rest) == len(names) - 1
    check_known_args(rest)  # raises on a parameter no job knows
    for p in meta["parameters"]:
        assert p["label"] and p["helpText"]


def test_flex_template_refuses_an_unknown_job(capsys):
    from pipelines import flex_template

    assert flex_template.main(["--job=predict", "--input=x"]) == 2
    assert "--job must be one of score, train" in capsys.readouterr().err
