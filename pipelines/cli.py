"""The ``autoenc`` command: ``autoenc train|score|demo [options]``.

Each subcommand is also a module: ``python -m pipelines.train`` and so on. Errors
that a user can fix are printed as one paragraph (exit status 2 for a bad option,
1 for bad input or a bad model directory); anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from autoenc.errors import AutoencError, ConfigError

COMMANDS = {
    "train": ("pipelines.train", "Train a model on Parquet/TFRecord data; write a new model version."),
    "score": ("pipelines.score", "Score data with a model: latent, reconstruction error, anomaly flag."),
    "demo": ("pipelines.demo", "Generate the built-in example data, train on it and score it."),
}
HELP_CLASSES = {
    "train": ("InputOptions", "TrainOptions"),
    "score": ("InputOptions", "ScoreOptions"),
    "demo": ("DemoOptions",),
}


def _usage() -> str:
    lines = ["usage: autoenc COMMAND [options]   (autoenc COMMAND --help for its options)", ""]
    lines += [f"  {name:6} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def _print_help(command: str) -> None:
    module = importlib.import_module(COMMANDS[command][0])
    options_module = importlib.import_module("pipelines.options")
    parser = argparse.ArgumentParser(
        prog=f"autoenc {command}",
        description=COMMANDS[command][1],
        epilog="Any Apache Beam pipeline option is accepted too (--runner, "
        "--direct_num_workers, --direct_running_mode, --setup_file, --temp_location, ...).",
    )
    for cls_name in HELP_CLASSES[command]:
        cls = getattr(module, cls_name, None) or getattr(options_module, cls_name)
        cls._add_argparse_args(parser)
    parser.print_help()


def _autoenc_error(error: BaseException) -> AutoencError | None:
    """The AutoencError behind ``error``, also when a runner wrapped it."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, AutoencError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def run_command(run, argv: list[str], name: str) -> int:
    """Calls ``run(argv)`` and turns user-fixable errors into a message and exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # autoenc's own progress (start selection, ...) is shown; Beam's INFO is not.
    logging.getLogger("autoenc").setLevel(logging.INFO)
    if any(a in ("-h", "--help") for a in argv):
        _print_help(name)
        return 0
    try:
        run(argv)
    except Exception as e:
        error = _autoenc_error(e)
        if error is None:
            raise
        print(f"autoenc {name}: error: {error}", file=sys.stderr)
        return 2 if isinstance(error, ConfigError) else 1
    return 0


def main(argv=None) -> int:
    # TensorFlow's C++ start-up notices (CUDA probing, CPU features) are noise on
    # a terminal; set before TensorFlow is first imported. Users may override.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"autoenc: unknown command {command!r}.\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return run_command(module.run, rest, command)


if __name__ == "__main__":
    sys.exit(main())
