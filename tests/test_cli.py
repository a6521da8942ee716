"""The ``autoenc`` command: flags per command, help, exit codes, quiet output.

Also checks docs/errors.md's exit-status table against ``autoenc_beam.cli``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import pathlib
import re
import subprocess
import sys

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from autoenc import __version__
from autoenc.datasets import article_table
from autoenc.errors import ConfigError, InputError
from autoenc_beam import cli, options

ROOT = pathlib.Path(__file__).resolve().parent.parent


def help_entries(command: str) -> dict[str, str]:
    """Option string -> its help entry, read from the printed help."""
    parser = cli.parser(command)
    usage = set(re.findall(r"(-{1,2}[\w-]+)", parser.format_usage()))
    entries, name = {}, None
    for line in parser.format_help().splitlines():
        match = re.match(r"^  (-{1,2}[\w-]+)", line)
        if match and match[1] in usage:
            name = match[1]
            entries[name] = line
        elif name and line.startswith("   "):
            entries[name] += " " + line.strip()
        else:
            name = None
    return entries


def test_version(capsys):
    assert cli.main(["--version"]) == cli.EXIT_OK
    assert capsys.readouterr().out.startswith(f"autoenc {__version__} (apache-beam ")
    assert cli.main(["score", "--version"]) == cli.EXIT_OK
    assert f"autoenc {__version__}" in capsys.readouterr().out


def test_a_flag_of_another_command_is_refused_with_its_command(capsys):
    argv = ["score", "--input=x.parquet", "--model_dir=m", "--output=o", "--epochs", "5"]
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "autoenc score: error: --epochs is an option of 'autoenc train' and 'autoenc demo'" in err
    assert "not of 'autoenc score'" in err
    assert cli.main(["sample", "--model_dir=m", "-n", "3", "--output=o", "--runner=DirectRunner"]) == 2
    assert "--runner is an option of 'autoenc train'" in capsys.readouterr().err


def test_an_unknown_flag_is_refused_with_a_suggestion(capsys):
    assert cli.main(["train", "--input=x.parquet", "--model_dir=m", "--epoch=3"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "Unknown option --epoch. Did you mean --epochs?" in err
    assert cli.main(["score", "--input=x", "--model_dir=m", "--output=o", "-x"]) == cli.EXIT_USAGE
    assert "Unknown option -x." in capsys.readouterr().err


def test_beam_and_runner_options_are_accepted_by_the_beam_commands():
    beam = [
        "--runner=DataflowRunner",
        "--direct_num_workers=2",
        "--setup_file=./setup.py",
        "--temp_location=gs://b/tmp",
        "--project=p",
        "--region",
        "europe-west1",
        "--experiments=use_runner_v2",
        "--flink_master=localhost:8081",
        "--no_save_main_session",
        "-v",
    ]
    namespace = cli.check_args("score", ["--input=x", "--model_dir=m", "--output=o", *beam])
    assert namespace.verbose == 1 and namespace.output == "o"
    cli.check_args("demo", ["--epochs=3", "--seed=1", *beam])
    with pytest.raises(ConfigError, match="Invalid option value: argument --num_workers"):
        cli.check_args("score", ["--input=x", "--model_dir=m", "--output=o", "--num_workers=many"])


@pytest.mark.parametrize("flag", options.RUNNER_FLAGS, ids=lambda f: f.names[0])
def test_the_runner_flags_in_the_help_are_beams_own(flag):
    choices = flag.argparse.get("choices") or ["1"]
    value = [] if flag.argparse.get("action") == "store_true" else [choices[0]]
    assert options.unknown_to_beam([flag.names[0], *value]) == []


def test_help_is_grouped_by_topic_with_every_default_or_required_mark():
    groups = {
        "train": [
            "input",
            "features",
            "model",
            "training",
            "threshold",
            "labels",
            "reproducibility",
            "runner",
        ],
        "score": ["input", "model", "threshold", "output", "drift", "runner"],
        "evaluate": ["input", "model", "threshold", "labels", "output", "evaluation", "runner"],
        "demo": ["demo", "features", "model", "training", "reproducibility", "runner"],
        "sample": ["sample"],
        "export": ["export"],
    }
    for command, titles in groups.items():
        text = cli.parser(command).format_help()
        found = re.findall(r"^(\w[\w ()]*):$", text, re.M)
        assert found == [*titles, "logging and information"], (command, found)
        for name, entry in help_entries(command).items():
            if name in ("-h", "--version"):
                continue
            assert "Default:" in entry or "Required." in entry, (command, entry)
            assert "Default: None" not in entry, (command, entry)
    score = help_entries("score")
    for name in ("--input", "--model_dir", "--output"):
        assert score[name].endswith("Required."), score[name]
    assert "--threshold" in score and "--contamination" in score and "--fail_on_drift" in score
    assert "--epochs" not in score and "--target_fpr" not in score
    assert help_entries("sample")["-n"].endswith("Required.")


def test_the_printed_help_is_the_parsers(capsys):
    assert cli.main(["evaluate", "--help"]) == cli.EXIT_OK
    assert capsys.readouterr().out == cli.parser("evaluate").format_help()


def test_exit_status_of_each_class(tmp_path, capsys):
    missing = tmp_path / "no-model"
    # Bad input, model or output: 3.
    status = cli.main(
        ["score", f"--input={tmp_path}/*.parquet", f"--model_dir={missing}", f"--output={tmp_path}/o"]
    )
    assert status == cli.EXIT_DATA
    assert "autoenc score: error:" in capsys.readouterr().err

    # Also when a runner wraps the error.
    def wrapped(argv):
        try:
            raise InputError("No file matches x.parquet.")
        except InputError as e:
            raise RuntimeError("a worker failed") from e

    export = ["--model_dir=m", "--output=o"]
    assert cli.run_command(wrapped, export, "export") == cli.EXIT_DATA
    assert "autoenc export: error: No file matches x.parquet." in capsys.readouterr().err

    # A bug: 1, with the traceback on stderr.
    def broken(argv):
        return {}["no such key"]

    assert cli.run_command(broken, export, "export") == cli.EXIT_INTERNAL
    captured = capsys.readouterr()
    assert "Traceback" in captured.err and "internal error: KeyError" in captured.err
    assert captured.out == ""

    # Usage: 2 (missing required flags, a bad value).
    assert cli.main(["export", "--model_dir=m"]) == cli.EXIT_USAGE
    assert "--output" in capsys.readouterr().err
    assert cli.main(["train", "--input=a.parquet", "--model_dir=m", "--epochs=x"]) == cli.EXIT_USAGE
    assert "Invalid option value: argument --epochs" in capsys.readouterr().err
    assert cli.main(["no-such-command"]) == cli.EXIT_USAGE


def test_the_logging_flags_are_not_passed_to_the_pipeline():
    seen = []
    argv = ["--model_dir=m", "--log_level", "error", "-q", "--output=o"]
    assert cli.run_command(seen.append, argv, "export") == cli.EXIT_OK
    assert seen == [["--model_dir=m", "--output=o"]]


def test_dataflow_job_lines_stay_and_other_beam_info_does_not(caplog):
    """Airflow's Dataflow hook finds the job by the "Created job with id" line
    of Beam's Dataflow API client: its logger stays at INFO by default."""
    source = pathlib.Path(importlib.util.find_spec("apache_beam.runners.dataflow.internal.apiclient").origin)
    text = source.read_text()
    assert "_LOGGER = logging.getLogger(__name__)" in text and "Created job with id: [%s]" in text
    name = "apache_beam.runners.dataflow.internal.apiclient"
    assert name in cli.OPERATOR_LOGGERS
    try:
        cli.setup_logging()
        client = logging.getLogger(name)
        client.info("Create job: %s", "<the whole job definition>")
        client.info("Created job with id: [%s]", "2026-12-02_01_02_03-123")
        client.info("To access the Dataflow monitoring console, please navigate to %s", "https://console")
        logging.getLogger("apache_beam.runners.portability.fn_api_runner").info("Running stage 1")
        logging.getLogger("autoenc.training").info("Training the chosen start")
        messages = [r.getMessage() for r in caplog.records]
        assert messages == [
            "Created job with id: [2026-12-02_01_02_03-123]",
            "To access the Dataflow monitoring console, please navigate to https://console",
            "Training the chosen start",
        ]
        caplog.clear()
        cli.setup_logging(logging.ERROR)
        client.info("Created job with id: [%s]", "x")
        assert caplog.records == []
    finally:
        cli.setup_logging()


@pytest.mark.pipeline
@pytest.mark.parametrize("program", [["autoenc_beam.cli", "score"], ["autoenc_beam.score"]])
def test_a_real_score_run_is_quiet_and_fail_on_drift_exits_4(program, tiny_model_dir, tmp_path):
    """``autoenc score`` (and ``python -m autoenc_beam.score``) in a fresh
    process: no TensorFlow C++ start-up lines, no CUDA probe error, no Beam
    apitools warning; the runner named; the drift warning once;
    --fail_on_drift exits 4 after writing everything."""
    table = article_table(300, seed=3)
    drifted = table.set_column(table.schema.get_field_index("x1"), "x1", pc.multiply(table["x1"], 3.0))
    pq.write_table(drifted, tmp_path / "drifted.parquet")
    out = tmp_path / "out"
    argv = [
        f"--input={tmp_path / 'drifted.parquet'}",
        f"--model_dir={tiny_model_dir}",
        f"--output={out}",
        "--fail_on_drift",
    ]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-m", *program, *argv], cwd=ROOT, env=env, capture_output=True, text=True
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["drift"]["warning"], summary["drift"]
    assert done.returncode == cli.EXIT_DRIFT, done.stderr[-3000:]
    err = done.stderr
    for noise in ("cuInit", "CUDA", "apitools", "absl::InitializeLog", "oneDNN", "Traceback", "Warning"):
        assert noise not in err, err
    assert not re.search(r"^[IWEF]\d{4} ", err, re.M), err
    assert err.count("the data may have drifted") == 1, err
    assert "on FnApiRunner" in err
    assert sorted(os.listdir(out)) == [".lock", "rejected", "scores", "summary.json"]
    assert len(err.splitlines()) <= 8, err


def test_docs_errors_md_lists_every_exit_status():
    page = (ROOT / "docs" / "errors.md").read_text()
    rows = dict(re.findall(r"^\| `(\d)` \| ([^|]+) \|", page, re.M))
    codes = {name: getattr(cli, name) for name in dir(cli) if name.startswith("EXIT_")}
    assert sorted(map(int, rows)) == sorted(codes.values())
    for name, code in codes.items():
        assert str(code) in cli.__doc__ and str(code) in rows, name
