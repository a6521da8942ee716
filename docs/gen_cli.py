"""Writes docs/cli.md, the command-line reference, from the commands' own ``--help``.

The page is each command's help text exactly as ``autoenc COMMAND --help``
prints it, so it cannot say anything the parsers do not. Regenerate it after
changing an option:

    python docs/gen_cli.py            # rewrite docs/cli.md
    python docs/gen_cli.py --check    # exit 1 and show the difference if it is stale

``tests/test_docs.py`` runs the check. The help is generated at a fixed width
(100 columns) with the interpreter that runs this script; argparse's layout
differs slightly between Python versions, so the page records the version it
was generated with and the test compares only under that version.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import difflib
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "cli.md"
WIDTH = 100
MARKER = (
    "<!-- not run by the tests: the output of `autoenc{command} --help`, not a command; "
    "tests/test_docs.py checks that it is what the parser prints today -->"
)


def python_version() -> str:
    """The ``major.minor`` of this interpreter, recorded on the page."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def commands() -> list[str]:
    """The subcommands, in the order ``autoenc --help`` lists them."""
    sys.path.insert(0, str(ROOT))
    try:
        from autoenc_beam.cli import COMMANDS
    finally:
        sys.path.pop(0)
    return list(COMMANDS)


def help_text(args: list[str]) -> str:
    """What ``autoenc ARGS`` prints on stdout, at a fixed width and without colour."""
    env = dict(os.environ, COLUMNS=str(WIDTH), LINES="50", NO_COLOR="1", PYTHON_COLORS="0")
    result = subprocess.run(
        [sys.executable, "-m", "autoenc_beam.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"'autoenc {' '.join(args)}' exited with {result.returncode}, expected 0.\n{result.stderr}"
        )
    return result.stdout.rstrip() + "\n"


def render() -> str:
    """The whole page, as it should be committed."""
    names = commands()
    calls = [["--help"]] + [[name, "--help"] for name in names]
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        texts = list(pool.map(help_text, calls))
    lines = [
        "# Command-line reference",
        "",
        "Every option of every command, as `autoenc COMMAND --help` prints it.",
        "This page is generated from the parsers, so it matches the installed",
        "version; do not edit it by hand. Regenerate it with `python docs/gen_cli.py`",
        f"(generated with Python {python_version()}, {WIDTH} columns).",
        "",
        "The Beam commands (`train`, `score`, `evaluate`, `demo`) also take every",
        "Apache Beam pipeline option (`--runner`, `--direct_num_workers`,",
        "`--setup_file`, `--temp_location`, ...): see [Deployment](deploy.md).",
        "What each option does in more depth: [train](train.md), [score](score.md),",
        "[evaluate](evaluate.md), [serving](serving.md).",
        "",
    ]
    for call, text in zip(calls, texts, strict=True):
        command = "" if call == ["--help"] else f" {call[0]}"
        lines += [
            f"## `autoenc{command}`",
            "",
            MARKER.format(command=command),
            "```text",
            text.rstrip(),
            "```",
            "",
        ]
    return "\n".join(lines).rstrip() + "\n"


def difference(page: str) -> str:
    """A unified diff from the committed docs/cli.md to ``page``; empty when equal."""
    current = PAGE.read_text() if PAGE.exists() else ""
    return "".join(
        difflib.unified_diff(
            current.splitlines(keepends=True), page.splitlines(keepends=True), "docs/cli.md", "generated now"
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with docs/cli.md instead of writing it")
    args = parser.parse_args(argv)
    page = render()
    if not args.check:
        PAGE.write_text(page)
        print(f"wrote {PAGE.relative_to(ROOT)}")
        return 0
    diff = difference(page)
    if not diff:
        return 0
    print(diff, end="")
    print("docs/cli.md is stale: run python docs/gen_cli.py", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
