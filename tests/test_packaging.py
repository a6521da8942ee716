"""Packaging: setup.py must build a source distribution (Beam's --setup_file does
exactly that), the wheel built from it holds both packages with their metadata,
and the public API of each package resolves without loading the heavy modules."""

import email.parser
import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Installed package -> its folder in the source tree (pyproject.toml's package-dir).
PACKAGES = {"autoenc": "autoenc", "autoenc_beam": "pipelines"}


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    """The source distribution, built as Beam's --setup_file builds it."""
    out = tmp_path_factory.mktemp("sdist")
    subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "-d", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (archive,) = out.glob("autoenc-*.tar.gz")
    return archive


@pytest.fixture(scope="module")
def wheel(sdist, tmp_path_factory) -> zipfile.ZipFile:
    """The wheel built from the source distribution alone (as pip does from PyPI),
    which proves the sdist holds everything the build needs. No build isolation:
    the test runs offline with this environment's setuptools."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(sdist),
        ],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("autoenc-*.whl")
    return zipfile.ZipFile(path)


def _metadata(wheel: zipfile.ZipFile):
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.parser.Parser().parsestr(wheel.read(name).decode())


def _source_files(folder: str, installed_as: str | None = None) -> set[str]:
    """The package's files under ``folder`` of the source tree, named as in
    the sdist, or as in the wheel when ``installed_as`` is given."""
    files = {p.relative_to(ROOT / folder).as_posix() for p in (ROOT / folder).rglob("*.py")} | {"py.typed"}
    return {f"{installed_as or folder}/{f}" for f in files}


def test_sdist_holds_the_library_and_the_pipelines(sdist):
    names = {
        Path(n).relative_to(Path(n).parts[0]).as_posix()
        for n in tarfile.open(sdist).getnames()
        if len(Path(n).parts) > 1
    }
    wanted = {
        "setup.py",
        "pyproject.toml",
        "README.md",
        "LICENSE",
        *_source_files("autoenc"),
        *_source_files("pipelines"),
    }
    assert wanted <= names, sorted(wanted - names)
    # Beam ships this archive to every worker: no tests, benchmarks or docs.
    assert not {n for n in names if n.split("/")[0] in {"tests", "benchmarks", "docs", "runners"}}


def test_wheel_holds_both_packages_typed_and_nothing_else(wheel):
    names = set(wheel.namelist())
    assert _source_files("autoenc") | _source_files("pipelines", "autoenc_beam") <= names
    assert "autoenc_beam/flex_template_metadata.json" in names
    assert not any(n.startswith("pipelines/") for n in names)  # installed under its own name only
    top = {n.split("/")[0] for n in names}
    (dist_info,) = top - set(PACKAGES)
    assert dist_info.startswith("autoenc-") and dist_info.endswith(".dist-info"), top
    assert any(n.startswith(f"{dist_info}/") and n.endswith("LICENSE") for n in names)


def test_wheel_metadata(wheel):
    import autoenc

    meta = _metadata(wheel)
    assert meta["Name"] == "autoenc" and meta["Version"] == autoenc.__version__
    assert "Apache-2.0" in (meta["License-Expression"], meta["License"])
    assert meta["Summary"] and meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload().startswith("# autoenc")  # the README, shown by package indexes
    classifiers = meta.get_all("Classifier")
    assert "License :: OSI Approved :: Apache Software License" in classifiers
    assert "Typing :: Typed" in classifiers

    # The Python versions: the classifiers name exactly the minor versions that
    # Requires-Python admits (tested in CI), no more and no fewer.
    from packaging.specifiers import SpecifierSet

    requires_python = SpecifierSet(meta["Requires-Python"])
    admitted = {f"3.{m}" for m in range(8, 20) if f"3.{m}.0" in requires_python}
    named = {
        c.rsplit(" :: ", 1)[1]
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    assert named == admitted, (meta["Requires-Python"], sorted(named))
    assert "3.10" not in admitted, "3.10 is not supported (datetime.UTC); see pyproject.toml"

    # The extras: the launching machine's cloud extras follow the core Beam pin.
    from packaging.requirements import Requirement

    assert {"test", "dev", "bench", "docs", "gcp", "aws"} <= set(meta.get_all("Provides-Extra"))
    beam = {}
    for req in map(Requirement, meta.get_all("Requires-Dist")):
        if req.name == "apache-beam":
            extra = re.search(r'extra == "(\w+)"', str(req.marker)) if req.marker else None
            beam[extra.group(1) if extra else None] = req
    assert beam[None].extras == {"dataframe"}
    for extra in ("gcp", "aws"):
        assert beam[extra].extras == {extra} and beam[extra].specifier == beam[None].specifier, beam[extra]


def test_wheel_declares_the_autoenc_command(wheel):
    import configparser

    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    entry_points = configparser.ConfigParser()
    entry_points.read_string(wheel.read(name).decode())
    module, _, func = entry_points["console_scripts"]["autoenc"].partition(":")
    assert (module, func) == ("autoenc_beam.cli", "main")
    assert callable(getattr(importlib.import_module(module), func))


@pytest.mark.parametrize("package", PACKAGES)
def test_public_api_resolves_lazily(package):
    """Every name in ``__all__`` resolves, is listed by ``dir()``, and importing
    the package alone loads none of scikit-learn, TensorFlow or Beam."""
    code = (
        f"import sys, {package}; "
        "heavy = [m for m in ('sklearn', 'tensorflow', 'keras', 'apache_beam') if m in sys.modules]; "
        f"missing = [n for n in {package}.__all__ if n not in dir({package})]; "
        f"values = [getattr({package}, n) for n in {package}.__all__]; "
        "print(heavy, missing, len(values))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    module = importlib.import_module(package)
    assert out.stdout.split() == ["[]", "[]", str(len(module.__all__))], out.stdout
    assert len(set(module.__all__)) == len(module.__all__)
    with pytest.raises(AttributeError, match="no attribute 'not_public'"):
        module.not_public  # noqa: B018


def test_scoring_does_without_beams_runinference_module():
    """``autoenc score`` and the ``Score`` transform do not import Beam's
    RunInference module, which imports PyTorch where it is installed (1.6 s
    of every run); the handler, which needs it, still resolves."""
    code = (
        "import sys; import autoenc_beam.score, autoenc_beam.inference; "
        "before = 'apache_beam.ml.inference.base' in sys.modules; "
        "from autoenc_beam.inference import AutoencoderModelHandler; "
        "print(before, 'apache_beam.ml.inference.base' in sys.modules, AutoencoderModelHandler.__module__)"
    )
    out = _printed_by_a_fresh_process(code)
    assert out.split() == ["False", "True", "autoenc_beam.handler"], out


def test_setup_py_refuses_to_build_without_pyproject(tmp_path):
    """A copy of the sources without pyproject.toml (a Dockerfile that forgets it)
    fails loudly instead of building a package named UNKNOWN."""
    shutil.copy(ROOT / "setup.py", tmp_path / "setup.py")
    done = subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode != 0 and "pyproject.toml is missing" in done.stderr


def test_library_does_not_import_beam():
    code = (
        "import sys, autoenc.artifact, autoenc.training, autoenc.scoring, autoenc.tfexample, "
        "autoenc.validation, autoenc.tfrecord, autoenc.reservoir, autoenc.preprocessing, autoenc.report, "
        "autoenc.export; "
        "print('apache_beam' in sys.modules)"
    )
    assert _printed_by_a_fresh_process(code).strip() == "False"


def _printed_by_a_fresh_process(code: str) -> str:
    """What ``code`` prints, run by a new interpreter (nothing imported yet)."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout


def dockerfile_final_stage(path: Path) -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile's last stage, continuation lines joined."""
    text = path.read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    steps = [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from + 1 :]


def test_dockerfile_copies_what_the_install_reads():
    """``pip install .`` in the image reads pyproject.toml (all the metadata),
    setup.py and README.md (the long description); LICENSE ships with it."""
    copied = set()
    for op, args in dockerfile_final_stage(ROOT / "Dockerfile"):
        if op == "COPY" and not args.startswith("--from"):
            copied |= {s.rstrip("/") for s in args.split()[:-1]}
    missing = {"pyproject.toml", "setup.py", "README.md", "LICENSE"} - copied
    assert not missing, f"the Dockerfile does not COPY {sorted(missing)} before 'pip install .'"


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
    from autoenc_beam.flex_template import split_job
    from autoenc_beam.options import check_known_args

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
    from autoenc_beam import flex_template

    assert flex_template.main(["--job=predict", "--input=x"]) == 2
    assert "--job must be one of score, train" in capsys.readouterr().err


def test_a_users_own_pipelines_package_does_not_hide_autoenc(tmp_path, tiny_model_dir, article_parquet):
    """A project with a ``pipelines`` package of its own first on ``sys.path``
    (an Airflow DAG folder, say) still runs the ``autoenc`` command and imports
    autoenc's transforms, installed as ``autoenc_beam``, beside its own."""
    dags = tmp_path / "dags"
    (dags / "pipelines").mkdir(parents=True)
    (dags / "pipelines" / "__init__.py").write_text("OWNER = 'the user'\n")
    (dags / "pipelines" / "cli.py").write_text("raise ImportError('the user\\'s own pipelines.cli')\n")
    (dags / "pipelines" / "score.py").write_text("raise ImportError('the user\\'s own pipelines.score')\n")
    env = {**os.environ, "PYTHONPATH": str(dags)}
    command = Path(sys.executable).with_name("autoenc")

    version = subprocess.run([command, "--version"], cwd=dags, env=env, capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("autoenc "), version.stderr

    output = tmp_path / "scores"
    code = (
        "import sys, pipelines; from autoenc_beam import AutoencoderModelHandler, Score, cli; "
        "assert pipelines.OWNER == 'the user', pipelines; "
        "print(Score.__module__, AutoencoderModelHandler.__module__); "
        "sys.exit(cli.main(sys.argv[1:]))"
    )
    argv = ["score", f"--input={article_parquet}", f"--model_dir={tiny_model_dir}", f"--output={output}"]
    scored = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=dags, env=env, capture_output=True, text=True
    )
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert scored.stdout.split()[:2] == ["autoenc_beam.inference", "autoenc_beam.handler"]
    summary = json.loads((output / "summary.json").read_text())
    assert summary["counts"]["read"] == summary["counts"]["scored"] == 2_000
