"""Every code block in ``docs/`` is run by a test or says why not.

A fenced block is preceded by one of:

* ``<!-- run by tests/test_docs.py -->``: run here, in order, each page in its
  own temporary directory (Python blocks share one namespace per page; bash
  blocks run with this interpreter's ``bin`` first on ``PATH``);
* ``<!-- run by tests/<file>.py ... -->``: another test runs it (that file
  must name the page);
* ``<!-- not run by the tests: <why> -->``.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
TESTS = pathlib.Path(__file__).resolve().parent
BLOCK = re.compile(r"(?:<!--(?P<marker>[^>]*)-->\s*\n)?```(?P<lang>[\w-]*)\n(?P<code>.*?)```", re.S)


def blocks(page: pathlib.Path) -> list[tuple[str, str, str]]:
    """(marker, language, code) of each fenced block of a page."""
    return [((m["marker"] or "").strip(), m["lang"], m["code"]) for m in BLOCK.finditer(page.read_text())]


PAGES = sorted(DOCS.glob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_block_is_run_or_says_why_not(page):
    for marker, _lang, code in blocks(page):
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
    """Runs python.md and beam.md (the pages with blocks for this file)."""
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
