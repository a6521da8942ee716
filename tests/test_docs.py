"""Every code block in ``docs/`` is run by a test or says why not.

A fenced block is preceded by one of:

* ``<!-- run by tests/test_docs.py -->``: run here, in order, each page in its
  own temporary directory (Python blocks share one namespace per page; bash
  blocks run with this interpreter's ``bin`` first on ``PATH``);
* ``<!-- run by tests/<file>.py ... -->``: another test runs it (that file
  must name the page);
* ``<!-- not run by the tests: <why> -->``.

The README's blocks too, but for its first two commands (.ci/run runs them).
docs/cli.md must be what ``python docs/gen_cli.py`` writes now (the commands'
own ``--help``), and every flag a page shows after ``autoenc COMMAND`` must be
one that command takes.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
TESTS = pathlib.Path(__file__).resolve().parent
BLOCK = re.compile(r"(?:<!--(?P<marker>[^>]*)-->\s*\n[ \t]*)?```(?P<lang>[\w-]*)\n(?P<code>.*?)```", re.S)


def blocks(page: pathlib.Path) -> list[tuple[str, str, str]]:
    """(marker, language, code) of each fenced block of a page."""
    return [((m["marker"] or "").strip(), m["lang"], m["code"]) for m in BLOCK.finditer(page.read_text())]


PAGES = sorted(DOCS.glob("*.md"))


@pytest.mark.parametrize("page", [*PAGES, README], ids=[p.name for p in [*PAGES, README]])
def test_every_block_is_run_or_says_why_not(page):
    # The README opens with its two commands, unmarked: .ci/run runs both (the
    # demo from the built wheel); test_readme_is_short_... keeps them first.
    for marker, _lang, code in blocks(page)[1 if page == README else 0 :]:
        where = f"{page.name}: block {code[:60]!r}"
        if marker.startswith("not run by the tests:"):
            assert len(marker) > len("not run by the tests:") + 5, f"{where}: say why it is not run"
            continue
        match = re.match(r"run by (tests/\w+\.py)", marker)
        assert match, f"{where}: no '<!-- run by tests/... -->' or '<!-- not run by the tests: why -->'"
        test_file = TESTS.parent / match[1]
        assert test_file.exists(), f"{where}: {match[1]} does not exist"
        assert page.name in test_file.read_text(), f"{where}: {match[1]} does not name {page.name}"


RUN_HERE = [p for p in PAGES if any(m.startswith("run by tests/test_docs.py") for m, _, _ in blocks(p))]


@pytest.mark.pipeline
@pytest.mark.parametrize("page", RUN_HERE, ids=[p.name for p in RUN_HERE])
def test_the_pages_blocks_run(page, tmp_path, monkeypatch):
    """Runs the pages with blocks for this file (quickstart.md, python.md, beam.md)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}")
    namespace: dict = {"__name__": "__docs__"}
    ran = 0
    for marker, lang, code in blocks(page):
        if not marker.startswith("run by tests/test_docs.py"):
            continue
        if lang == "python":
            exec(compile(code, f"{page.name}", "exec"), namespace)  # noqa: S102
        elif lang == "bash":
            subprocess.run(["bash", "-euo", "pipefail", "-c", code], check=True)
        else:
            pytest.fail(f"{page.name}: cannot run a {lang!r} block")
        ran += 1
    assert ran
    if page.name == "python.md":
        assert (tmp_path / "latent.png").stat().st_size > 1000
        assert (tmp_path / "scores" / "notebook" / "summary.json").exists()
    if page.name == "beam.md":
        anomalies = "".join(p.read_text() for p in tmp_path.glob("anomalies*.csv"))
        assert anomalies.count("anomaly-") >= 12  # most of the 20 planted rows
        counts = "".join(p.read_text() for p in tmp_path.glob("counts*"))
        assert "('read', 3020)" in counts
        flagged = "".join(p.read_text() for p in tmp_path.glob("flagged*"))
        assert flagged.count("anomaly-") >= 12
        outliers = "".join(p.read_text() for p in tmp_path.glob("outliers*"))
        assert outliers.count("anomaly-") >= 12
    if page.name == "quickstart.md":
        assert (tmp_path / "models" / "sensors" / "LATEST").exists()
        assert (tmp_path / "runs" / "2026-12-02" / "summary.json").exists()
        assert (tmp_path / "eval" / "evaluation.json").exists()


# The command-line reference and the flags the pages use.

CLI_PAGE = DOCS / "cli.md"
CLI_SECTION = re.compile(r"^## `autoenc(?: (?P<command>\w+))?`\n.*?```text\n(?P<help>.*?)```", re.S | re.M)
FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9_]*)")
INVOCATION = re.compile(
    r"(?:\bautoenc|python -m (?:autoenc_beam|pipelines)\.|pipelines/)(?: )?(train|score|evaluate|demo|sample|export)\b"
)


def _gen_cli():
    """docs/gen_cli.py as a module."""
    spec = importlib.util.spec_from_file_location("gen_cli", DOCS / "gen_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_what_the_parsers_print():
    """docs/cli.md is regenerated with ``python docs/gen_cli.py``; this fails when
    an option, a default or a help text changed since."""
    gen_cli = _gen_cli()
    recorded = re.search(r"generated with Python (\d+\.\d+)", CLI_PAGE.read_text())
    assert recorded, "docs/cli.md does not say which Python generated it: run python docs/gen_cli.py"
    if recorded[1] != gen_cli.python_version():
        pytest.skip(f"docs/cli.md was generated with Python {recorded[1]}; argparse's layout differs here")
    diff = gen_cli.difference(gen_cli.render())
    assert not diff, f"docs/cli.md is stale: run python docs/gen_cli.py\n{diff[:4000]}"


def _command_flags() -> dict[str, set[str]]:
    """Each command's flags, read from docs/cli.md."""
    flags = {m["command"]: set(FLAG.findall(m["help"])) for m in CLI_SECTION.finditer(CLI_PAGE.read_text())}
    assert {"train", "score", "evaluate"} <= flags.keys(), (
        "docs/cli.md lacks a command: run python docs/gen_cli.py"
    )
    return flags


def _beam_flags() -> set[str]:
    from apache_beam.options.pipeline_options import PipelineOptions

    return set(PipelineOptions([]).get_all_options())


def _invocations(text: str):
    """(command, flags) of each ``autoenc COMMAND ...`` in a page's code blocks and
    inline code, continuation lines joined."""
    code = [m["code"] for m in BLOCK.finditer(text)]
    code += re.findall(r"`([^`\n]+)`", BLOCK.sub("", text))
    for chunk in code:
        for line in chunk.replace("\\\n", " ").splitlines():
            starts = list(INVOCATION.finditer(line))
            for i, match in enumerate(starts):
                end = starts[i + 1].start() if i + 1 < len(starts) else len(line)
                yield match[1], set(FLAG.findall(line[match.end() : end]))


DOCUMENTED = sorted([*DOCS.glob("*.md"), ROOT / "README.md"])
# Shown on purpose as what the command refuses (errors.md: a usage error).
SHOWN_AS_WRONG = {"autoenc score --epochs"}


@pytest.mark.parametrize("page", DOCUMENTED, ids=[p.name for p in DOCUMENTED])
def test_the_flags_a_page_shows_exist(page):
    """Every flag after ``autoenc COMMAND`` on a page, and every flag in the
    option table of a command's page, is one that command (or Beam) takes."""
    if page == CLI_PAGE:
        return
    commands, beam = _command_flags(), _beam_flags()
    text = page.read_text()
    wrong = []
    for command, flags in _invocations(text):
        wrong += [f"autoenc {command} --{f}" for f in sorted(flags - commands[command] - beam)]
    if page.stem in commands:
        for row in re.findall(r"^\| (`--[^|]*)\|", text, re.M):
            wrong += [f"autoenc {page.stem} --{f}" for f in FLAG.findall(row) if f not in commands[page.stem]]
    wrong = sorted(set(wrong) - SHOWN_AS_WRONG)
    assert not wrong, f"{page.name} shows flags the command does not take: {wrong}"


# The README: the front door, on GitHub.

FIRST_COMMANDS = (
    "python3.11 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/autoenc demo --workdir autoenc-demo\n"
    "python3.11 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest -q\n"
)


def test_readme_is_short_starts_with_its_two_commands_and_links_resolve():
    text = README.read_text()
    assert len(text) <= 10_000, (
        f"README.md is {len(text)} characters; keep it under 10,000 (move detail to docs/)"
    )
    assert text.startswith(f"# autoenc\n\n```bash\n{FIRST_COMMANDS}```\n")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert local, "README.md links to no docs page"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_readme_quickstart_is_the_one_the_tests_run():
    """The README's quickstart commands are a block of docs/quickstart.md, which
    test_the_pages_blocks_run runs."""
    readme_blocks = [m["code"] for m in BLOCK.finditer(README.read_text()) if "autoenc train" in m["code"]]
    quickstart = [
        c for marker, _, c in blocks(DOCS / "quickstart.md") if marker.startswith("run by tests/test_docs.py")
    ]
    assert readme_blocks and readme_blocks[0] in quickstart
