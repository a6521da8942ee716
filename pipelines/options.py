"""Command-line options of the autoenc pipelines, as Beam ``PipelineOptions``.

Each flag is declared once, as a ``Flag`` in a table (``INPUT_FLAGS``,
``TRAIN_FLAGS``, ``SCORE_FLAGS``, ``EVALUATE_FLAGS``) with its help topic and
the commands that take it. The tables make the Beam options classes
(``InputOptions``, ... read with ``options.view_as``) and the help and checks
of each ``autoenc`` command (``autoenc_beam.cli``). ``RUNNER_FLAGS`` are Beam's
own, listed in the help with autoenc's defaults.

Every standard Beam option (``--runner``, ``--direct_num_workers``,
``--setup_file``, ...) is accepted alongside these.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import re

from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
)

from autoenc.categorical import MAX_CATEGORIES
from autoenc.errors import ConfigError
from autoenc.preprocessing import EXTREME_SPREADS, MISSING
from autoenc.training import (
    INITS,
    LOSSES,
    MODEL_KINDS,
    NARROW_LATENT,
    NARROW_N_INIT,
    NORMALIZATION_CHOICES,
    TrainingConfig,
)
from autoenc.validation import SPLITS

from .cli import EXIT_DRIFT

FORMATS = ("parquet", "tfrecord")
DEFAULTS = TrainingConfig()
READ_BATCH_BYTES = 64 * 2**20


def int_list(text: str) -> tuple[int, ...]:
    """'100,100' -> (100, 100)."""
    return tuple(int(part) for part in text.split(",") if part.strip())


def name_list(text: str) -> tuple[str, ...]:
    """'a, b' -> ('a', 'b')."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


# Commands, and the topics their help is grouped by, in the order shown.
TRAIN, SCORE, EVALUATE, DEMO = "train", "score", "evaluate", "demo"
BEAM_COMMANDS = (TRAIN, SCORE, EVALUATE, DEMO)
TOPICS = {
    "input": "Where the records are and how they are read.",
    "features": "Which columns the model reads, and which rows are too extreme to train on.",
    "model": "The model directory and, for train, the autoencoder's architecture.",
    "training": "How the model is fitted and when training stops.",
    "threshold": "Where reconstruction_error becomes is_anomaly. Give at most one of these.",
    "labels": "Known labels, when the data has them.",
    "reproducibility": "The same seed and data give the same split, weights and model.",
    "output": "What is written, and where.",
    "drift": "This run's reconstruction errors against the model's validation errors.",
    "evaluation": "The baselines and metrics of the evaluation.",
    "runner": "Where the pipeline runs. Any other Apache Beam pipeline option (--project, --region, "
    "--requirements_file, --sdk_container_image, ...) is accepted too.",
}


@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line flag of the autoenc commands.

    Attributes:
        names: its option strings, e.g. ``("--epochs",)``.
        topic: the help section it is listed under (a key of ``TOPICS``).
        commands: the commands that take it.
        help: what it does, without its default.
        shown: its default in words, where the value alone would not say it.
        required_by: the commands that cannot run without it.
        argparse: the rest of its ``add_argument`` declaration (type, choices,
            action, default).
    """

    names: tuple[str, ...]
    topic: str
    commands: tuple[str, ...]
    help: str
    shown: str | None = None
    required_by: tuple[str, ...] = ()
    argparse: dict = dataclasses.field(default_factory=dict)

    def help_for(self, command: str) -> str:
        """The help text in ``command``'s help: what it does, then "Required." or its default."""
        if command in self.required_by:
            return f"{self.help} Required."
        default = self.argparse.get("default")
        if self.shown is not None:
            shown = self.shown
        elif self.argparse.get("action") == "store_true":
            shown = "off"
        elif isinstance(default, tuple):
            shown = ",".join(map(str, default))
        else:
            shown = str(default)
        return f"{self.help} Default: {shown}."


def flag(*names: str, topic: str, commands: tuple[str, ...], help: str, shown=None, required_by=(), **kw):
    """A ``Flag``; ``kw`` is its argparse declaration."""
    return Flag(names, topic, commands, help, shown, tuple(required_by), kw)


# Flags that train, score and evaluate take; the model, training and
# reproducibility flags also go to demo, which passes them to its training job.
TSE = (TRAIN, SCORE, EVALUATE)
FIT = (TRAIN, DEMO)

INPUT_FLAGS = (
    flag(
        "--input",
        topic="input",
        commands=TSE,
        required_by=TSE,
        type=str,
        default=None,
        help="Glob of the input files on any Beam filesystem, e.g. 'data/*.parquet'.",
    ),
    flag(
        "--format",
        topic="input",
        commands=TSE,
        choices=FORMATS,
        default=None,
        type=str,
        help="Input format.",
        shown="inferred from the file extension (.parquet; .tfrecord, .tfrecords, .tfr, "
        "optionally followed by .gz)",
    ),
    flag(
        "--model_dir",
        topic="model",
        commands=TSE,
        required_by=TSE,
        type=str,
        default=None,
        help="Model directory: train writes a new version into it, score and evaluate read one.",
    ),
    flag(
        "--read_batch_rows",
        topic="input",
        commands=TSE,
        type=int,
        default=65536,
        help="Most rows per Arrow batch read from the input.",
    ),
    flag(
        "--read_batch_bytes",
        topic="input",
        commands=TSE,
        type=int,
        default=READ_BATCH_BYTES,
        shown=f"{READ_BATCH_BYTES} (64 MiB)",
        help="Most bytes of memory per batch read from the input (the row's width decides "
        "the rows: a 600 KB image row gets about 50 a batch); bounds worker memory.",
    ),
)

TRAIN_FLAGS = (
    flag(
        "--features",
        topic="features",
        commands=(TRAIN,),
        type=name_list,
        default=None,
        help="Comma-separated feature columns, in model order.",
        shown="every numeric column (scalar, or lists of numbers for images and sequences) "
        "and every string, dictionary and boolean column that is not a key column and does not "
        "look like an identifier, a timestamp or free text",
    ),
    flag(
        "--categorical_columns",
        topic="features",
        commands=(TRAIN,),
        type=name_list,
        default=None,
        help="Comma-separated feature columns to treat as categorical (each a one-hot block "
        "of its most frequent values, scored by cross-entropy); integer columns are "
        "categorical only when named here.",
        shown="every string, dictionary and boolean feature column",
    ),
    flag(
        "--max_categories",
        topic="features",
        commands=(TRAIN,),
        type=int,
        default=MAX_CATEGORIES,
        help="Categories a categorical column keeps: its most frequent values in the training "
        "input (counted in the Beam pass); rarer values and values never seen share one "
        "out-of-vocabulary slot.",
    ),
    flag(
        "--shape",
        topic="features",
        commands=(TRAIN,),
        action="append",
        default=None,
        help="Shape of a tensor feature (an image H,W,C or a sequence T,F), e.g. "
        "--shape 28,28,1 or --shape pixels=28,28,1; repeat once per tensor feature.",
        shown="fixed by a fixed_size_list type, else the first row's nested lengths",
    ),
    flag(
        "--key_columns",
        topic="features",
        commands=(TRAIN,),
        type=name_list,
        default=(),
        shown="none",
        help="Comma-separated columns that identify a row; copied to the scores.",
    ),
    flag(
        "--extreme_value_spreads",
        topic="features",
        commands=(TRAIN,),
        type=float,
        default=EXTREME_SPREADS,
        shown=f"{EXTREME_SPREADS:g}",
        help="A training row with a value farther than this many robust spreads (interquartile "
        "ranges of a sample taken at launch) from its feature's median is rejected as too "
        "extreme to train on ('inf': none is).",
    ),
    flag(
        "--missing",
        topic="features",
        commands=FIT,
        choices=MISSING,
        default=DEFAULTS.missing,
        help="What a missing feature value (null, or NaN) does: reject rejects its row (with "
        "the reason); impute gives it the feature's median over a sample taken at launch and adds "
        "a missing-indicator input for each feature with missing values in that sample; the "
        "model keeps the choice, and its scores count the values imputed per row (column "
        "imputed_values). A null in a categorical column is a category of its own under impute. "
        "Infinite values reject their row either way. Scalar features only.",
    ),
    flag(
        "--model",
        topic="model",
        commands=FIT,
        choices=MODEL_KINDS,
        default=DEFAULTS.model,
        help="Model kind: dense (fully connected), sparse (L1 penalty on a ReLU "
        "latent), vae (variational; latent = posterior mean), pca (linear "
        "baseline fitted by SVD), conv (one image feature), lstm and transformer "
        "(one sequence feature).",
    ),
    flag(
        "--loss",
        topic="model",
        commands=FIT,
        choices=LOSSES,
        default=DEFAULTS.loss,
        help="mse (mean squared error) or bce (binary cross-entropy on values "
        "min-max scaled to [0, 1], sigmoid output; for images). auto: bce for conv, "
        "mse otherwise.",
    ),
    flag(
        "--normalization",
        topic="model",
        commands=FIT,
        choices=NORMALIZATION_CHOICES,
        default=DEFAULTS.normalization,
        help="zscore (mean 0, standard deviation 1; linear output) or minmax "
        "(training values scaled to [0, 1]; sigmoid output, so the reconstruction "
        "stays inside the range the training rows span and a row beyond it keeps "
        "an error: better anomaly scores for anomalies that are extreme versions "
        "of normal rows). auto: minmax for bce, zscore otherwise.",
    ),
    flag(
        "--sparsity",
        topic="model",
        commands=FIT,
        type=float,
        default=DEFAULTS.sparsity,
        help="sparse only: weight of the L1 penalty on the latent.",
    ),
    flag(
        "--beta",
        topic="model",
        commands=FIT,
        type=float,
        default=DEFAULTS.beta,
        help="vae only: weight of the KL term.",
    ),
    flag(
        "--latent_dim",
        topic="model",
        commands=FIT,
        type=int,
        default=None,
        help="Width of the latent vector.",
        shown="ceil(sqrt(number of features))",
    ),
    flag(
        "--hidden_units",
        topic="model",
        commands=FIT,
        type=int_list,
        default=DEFAULTS.hidden_units,
        help="Comma-separated encoder layer widths, mirrored in the decoder.",
    ),
    flag(
        "--activation",
        topic="model",
        commands=FIT,
        type=str,
        default=DEFAULTS.activation,
        help="Hidden-layer activation (a Keras name).",
    ),
    flag(
        "--epochs",
        topic="training",
        commands=FIT,
        type=int,
        default=DEFAULTS.epochs,
        help="Most training epochs; early stopping usually ends sooner.",
    ),
    flag(
        "--batch_size",
        topic="training",
        commands=FIT,
        type=int,
        default=DEFAULTS.batch_size,
        help="Rows per gradient step.",
    ),
    flag(
        "--learning_rate",
        topic="training",
        commands=FIT,
        type=float,
        default=DEFAULTS.learning_rate,
        help="Adam's initial learning rate.",
    ),
    flag(
        "--patience",
        topic="training",
        commands=FIT,
        type=int,
        default=DEFAULTS.patience,
        help="Epochs without validation improvement before training stops (best weights kept).",
    ),
    flag(
        "--min_improvement",
        topic="training",
        commands=FIT,
        type=float,
        default=DEFAULTS.min_improvement,
        help="Relative fall in validation loss that counts as an improvement for "
        "--patience (smaller falls still keep the better weights).",
    ),
    flag(
        "--validation_fraction",
        topic="training",
        commands=FIT,
        type=float,
        default=DEFAULTS.validation_fraction,
        help="Share of rows held out for early stopping and the threshold.",
    ),
    flag(
        "--trim",
        topic="training",
        commands=FIT,
        type=float,
        default=DEFAULTS.trim,
        help="Share of each batch's highest-loss rows left out of the gradient "
        "and of the validation loss, from the first epoch after the start selection, "
        "so that anomalies among the training rows do not teach the model to "
        "reconstruct them; 0 trains on every row. pca ignores it.",
    ),
    flag(
        "--split_by",
        topic="training",
        commands=FIT,
        choices=SPLITS,
        default="position",
        help="How rows are split into training and validation (with --seed and "
        "--validation_fraction): 'position' by the file's path below the input glob's directory and the row number; 'key' by "
        "the values of --key_columns, so the same rows give the same split "
        "wherever the files lie and however the data is cut into files, and "
        "duplicate keys stay on one side.",
    ),
    flag(
        "--init",
        topic="training",
        commands=FIT,
        choices=INITS,
        default=DEFAULTS.init,
        help="How the first start is made: 'spectral' fits the encoder to the "
        "spectral coordinates of a sample of the rows (guards against folded "
        "encodings), 'random' draws it like the others, 'auto' is spectral for a "
        f"latent at most {NARROW_LATENT} wide and random otherwise.",
    ),
    flag(
        "--n_init",
        topic="training",
        commands=FIT,
        type=int,
        default=DEFAULTS.n_init,
        help="Starts tried: each gets short warm-ups, the worse half is dropped "
        "after each, and the last is trained to the end.",
        shown=f"{NARROW_N_INIT} for a latent at most {NARROW_LATENT} wide, else 1",
    ),
    flag(
        "--contamination",
        topic="threshold",
        commands=TSE,
        type=float,
        default=None,
        help="Expected share of anomalies: the threshold is the (1 - contamination) "
        "quantile of validation errors. score and evaluate: override the model's "
        "threshold with that quantile of its stored validation errors.",
        shown=f"train: {DEFAULTS.contamination}; score and evaluate: the model's threshold",
    ),
    flag(
        "--threshold",
        topic="threshold",
        commands=TSE,
        type=float,
        default=None,
        help="A fixed anomaly threshold on reconstruction_error (instead of "
        "--contamination). score and evaluate: override the model's threshold.",
        shown="none (train: set by --contamination or the labels; score and evaluate: the model's threshold)",
    ),
    flag(
        "--target_fpr",
        topic="threshold",
        commands=(TRAIN,),
        type=float,
        default=None,
        help="With --label_column: the threshold flags at most this share of the "
        "validation rows labeled normal.",
        shown="none: the threshold with the best F1",
    ),
    flag(
        "--label_column",
        topic="labels",
        commands=(TRAIN, EVALUATE),
        type=str,
        default=None,
        help="A column of known labels (true or 1: anomaly, false or 0: normal; a row with "
        "another value is rejected). train: rows "
        "labeled anomalous are kept out of training, and the threshold is chosen on the "
        "labeled rows for the best F1, or for --target_fpr. evaluate: the labels to "
        "evaluate against.",
        shown="none (evaluate: the label column the model was trained with)",
    ),
    flag(
        "--seed",
        topic="reproducibility",
        commands=FIT,
        type=int,
        default=DEFAULTS.seed,
        help="Seeds the train/validation split, the weights and shuffling.",
    ),
)

SCORE_FLAGS = (
    flag(
        "--output",
        topic="output",
        commands=(SCORE, EVALUATE),
        required_by=(SCORE, EVALUATE),
        type=str,
        default=None,
        help="Output directory. score writes scores/, rejected/ and summary.json there; "
        "evaluate writes evaluation.json, report.html and rejected/.",
    ),
    flag(
        "--model_version",
        topic="model",
        commands=(SCORE, EVALUATE),
        type=str,
        default=None,
        help="Model version to use.",
        shown="the one MODEL_DIR/LATEST names",
    ),
    flag(
        "--passthrough",
        topic="output",
        commands=(SCORE,),
        action="store_true",
        default=False,
        help="Copy every input column to the scores, not only the key columns.",
    ),
    flag(
        "--explain_top_k",
        topic="output",
        commands=(SCORE,),
        type=int,
        default=3,
        help="Write, per row, the k features with the largest share of its "
        "reconstruction error, with their shares (column top_features; 0: none).",
    ),
    flag(
        "--error_map",
        topic="output",
        commands=(SCORE,),
        action="store_true",
        default=False,
        help="Also write each value's squared error (column error_map: for an image "
        "feature, a per-pixel error map, flattened in the feature's shape).",
    ),
    flag(
        "--drift_max_ks",
        topic="drift",
        commands=(SCORE,),
        type=float,
        default=0.2,
        help="Warn when the KS statistic between this run's errors and the model's "
        "validation errors exceeds this (0: same distribution, 1: disjoint).",
    ),
    flag(
        "--drift_max_median_ratio",
        topic="drift",
        commands=(SCORE,),
        type=float,
        default=2.0,
        help="Warn when this run's median error is more than this many times the "
        "validation median (or less than its inverse).",
    ),
    flag(
        "--drift_max_unseen",
        topic="drift",
        commands=(SCORE,),
        type=float,
        default=0.05,
        help="Warn when the share of rows whose value of a categorical column is outside its "
        "vocabulary exceeds the share in training by more than this (0.05: 5 points).",
    ),
    flag(
        "--fail_on_drift",
        topic="drift",
        commands=(SCORE,),
        action="store_true",
        default=False,
        help=f"Exit with status {EXIT_DRIFT} when the drift warning is given, after writing "
        "every output (scores, rejected rows, summary.json), so a scheduler can stop "
        "the jobs downstream.",
    ),
)

EVALUATE_FLAGS = (
    flag(
        "--train_input",
        topic="evaluation",
        commands=(EVALUATE,),
        type=str,
        default=None,
        help="Glob of the model's training data, to fit the PCA and IsolationForest "
        "baselines on the same training rows.",
        shown="the input the model records",
    ),
    flag(
        "--baseline_rows",
        topic="evaluation",
        commands=(EVALUATE,),
        type=int,
        default=100_000,
        help="Most training rows (a deterministic sample) the baselines are fitted on.",
    ),
    flag(
        "--precision_at_k",
        topic="evaluation",
        commands=(EVALUATE,),
        type=int,
        default=None,
        help="k of precision@k (the share labeled anomalous among the k highest-scoring rows).",
        shown="the number of rows labeled anomalous",
    ),
)


def add_flags(parser, flags: tuple[Flag, ...]) -> None:
    """Declares ``flags`` on a Beam options parser (help texts without defaults)."""
    for f in flags:
        parser.add_argument(*f.names, help=f.help, **f.argparse)


class InputOptions(PipelineOptions):
    """Where the records are and how they are stored."""

    @classmethod
    def _add_argparse_args(cls, parser):
        add_flags(parser, INPUT_FLAGS)


class TrainOptions(PipelineOptions):
    """Options of 'autoenc train' (some also taken by score, evaluate and demo)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        add_flags(parser, TRAIN_FLAGS)


class ScoreOptions(PipelineOptions):
    """Options of 'autoenc score' (--output and --model_version also of evaluate)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        add_flags(parser, SCORE_FLAGS)


class EvaluateOptions(PipelineOptions):
    """Options of 'autoenc evaluate' (besides --input, --model_dir, --output,
    --model_version, --label_column, --threshold and --contamination)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        add_flags(parser, EVALUATE_FLAGS)


_NUMBER = re.compile(r"-\d+(\.\d*)?([eE][-+]?\d+)?")


def is_flag(arg: str) -> bool:
    """``arg`` is an option name (``--x``, ``--x=1``, ``-n``), not a value such as ``-1``."""
    return arg.startswith("-") and arg != "--" and not _NUMBER.fullmatch(arg)


def unknown_to_beam(args: list[str]) -> list[str]:
    """The flags in ``args`` that no Beam options class declares (autoenc's
    options classes are Beam options classes too).

    Beam keeps the names of the flags no class declares when asked to
    (``get_all_options(retain_unknown_options=True)``); the ones it keeps that
    it does not declare are unknown. Beam takes no single-dash flag.

    Raises:
        ConfigError: a flag Beam declares has a value its type refuses.
    """
    single = [a.split("=", 1)[0] for a in args if is_flag(a) and not a.startswith("--")]
    double = [a for a in args if a not in single]
    known = set(PipelineOptions([]).get_all_options())
    printed = io.StringIO()
    try:
        # Beam's parser prints its whole usage and exits on a value it cannot
        # parse: keep the last line, the reason.
        with contextlib.redirect_stderr(printed):
            given = PipelineOptions(double).get_all_options(retain_unknown_options=True)
    except SystemExit:
        reason = (printed.getvalue().strip().splitlines() or ["a value is invalid"])[-1]
        raise ConfigError(
            f"Invalid option value: {reason.split(': error: ', 1)[-1]}. Run with --help for usage."
        ) from None
    new = set(given) - known
    names = [a.split("=", 1)[0] for a in double if is_flag(a)]
    return single + [n for n in names if n.lstrip("-").replace("-", "_") in new]


def check_known_args(argv: list[str]) -> None:
    """Fails on an option no autoenc command and no Beam options class knows.

    Beam only logs a warning for unknown options and drops them, so a typo such
    as ``--epoch 5`` would silently train with the default. (The ``autoenc``
    command checks more: each command takes only its own flags.)

    Raises:
        ConfigError: naming the unknown options, or a value of the wrong type.
    """
    unknown = unknown_to_beam(list(argv))
    if unknown:
        raise ConfigError(
            f"Unknown option(s): {', '.join(unknown)}. Run with --help for autoenc's "
            "options; any Beam pipeline option is accepted too."
        )


def check_threshold_options(options) -> None:
    """``--threshold``, ``--contamination`` and ``--target_fpr`` exclude each
    other, a threshold is a finite number, and ``--target_fpr`` needs labels.

    Raises:
        ConfigError: two given, a threshold that is not finite, or
            ``--target_fpr`` without ``--label_column``.
    """
    given = [
        f"--{name}"
        for name in ("threshold", "contamination", "target_fpr")
        if getattr(options, name, None) is not None
    ]
    if len(given) > 1:
        raise ConfigError(
            f"Pass one of --threshold, --contamination and --target_fpr, not {' and '.join(given)}."
        )
    if getattr(options, "target_fpr", None) is not None and not getattr(options, "label_column", None):
        raise ConfigError(
            "--target_fpr needs --label_column: a false-positive rate is measured on labeled rows."
        )
    if options.threshold is not None and not math.isfinite(options.threshold):
        raise ConfigError(f"--threshold must be a finite number. Received: --threshold={options.threshold}")


def require(options, *names: str) -> None:
    """Fails when a required option is absent."""
    missing = [f"--{n}" for n in names if getattr(options, n) in (None, "")]
    if missing:
        raise ConfigError(f"Missing required option(s): {', '.join(missing)}. Run with --help for usage.")


def check_runner(options: PipelineOptions) -> None:
    """Refuses runners known to lose data with autoenc's pipelines.

    Raises:
        ConfigError: ``--runner`` names the DaskRunner.
    """
    runner = options.view_as(StandardOptions).runner
    name = runner if isinstance(runner, str) else type(runner).__name__ if runner else ""
    if name.rsplit(".", 1)[-1].lower() in ("dask", "daskrunner"):
        raise ConfigError(
            f"--runner={name} is not supported: Beam 2.77's DaskRunner silently loses data "
            "(outputs emitted in finish_bundle are dropped, so file sinks write empty files, "
            "and Read transforms are not translated). Use the DirectRunner, PrismRunner, "
            "FlinkRunner, SparkRunner or DataflowRunner."
        )


# Most DirectRunner worker threads by default: more gave nothing on 2 cores, and
# every thread holds a few batches in memory.
MAX_LOCAL_WORKERS = 8
DIRECT_RUNNERS = ("", "direct", "directrunner", "switchingdirectrunner", "fnapirunner", "fnapi")


def local_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def use_local_cores(options: PipelineOptions, argv: list[str]) -> None:
    """On the DirectRunner, runs bundles on one thread per core (at most
    ``MAX_LOCAL_WORKERS``) unless ``--direct_running_mode`` or
    ``--direct_num_workers`` is given.

    Threads, not processes: the heavy steps (Parquet, numpy, TensorFlow) release
    the GIL, and threads share one loaded model, while worker processes pay for
    moving every batch between processes (measured in benchmarks/perf.py: on 2
    cores, 2 threads scored 1.37x as fast as one, 2 processes 0.7x).
    """
    runner = options.view_as(StandardOptions).runner
    name = runner if isinstance(runner, str) else type(runner).__name__ if runner else ""
    if name.rsplit(".", 1)[-1].lower() not in DIRECT_RUNNERS:
        return
    if any(a.split("=", 1)[0] in ("--direct_running_mode", "--direct_num_workers") for a in argv):
        return
    direct = options.view_as(DirectOptions)
    direct.direct_running_mode = "multi_threading"
    direct.direct_num_workers = max(1, min(local_cores(), MAX_LOCAL_WORKERS))


def parse(argv, *, save_main_session: bool = False) -> PipelineOptions:
    """Checks ``argv`` and returns the pipeline options of an autoenc job.

    Without ``--runner``, the job runs on Beam's in-process runner
    (``LOCAL_RUNNER``, ``default_runner``) with one thread per core
    (``use_local_cores``).

    Args:
        argv: the command-line arguments.
        save_main_session: pickle the main session for remote workers, unless
            the command line says (off by default: the DoFns live in
            importable modules, and pickling the caller's globals would ship
            whatever a notebook or DAG file holds).

    Raises:
        ConfigError: an unknown option, a bad value, or no --input / --model_dir.
    """
    argv = list(argv or [])
    check_known_args(argv)
    options = PipelineOptions(argv)
    check_runner(options)
    default_runner(options)
    if not any(a.split("=", 1)[0] in ("--save_main_session", "--no_save_main_session") for a in argv):
        options.view_as(SetupOptions).save_main_session = save_main_session
    use_local_cores(options, argv)
    require(options.view_as(InputOptions), "input", "model_dir")
    return options


# The runner of a job given no --runner: Beam's in-process portable runner, the
# one Beam's DirectRunner falls back to when it cannot use Prism. Asked for by
# name, because Beam 2.77's DirectRunner first tries to download the Prism
# runner binary from the internet at run time (and Prism ignores
# --direct_num_workers): a scheduled batch job should not fetch a binary by
# surprise, nor wait for the download to time out offline. --runner
# DirectRunner or PrismRunner still gets Beam's own behaviour.
LOCAL_RUNNER = "FnApiRunner"


def default_runner(options: PipelineOptions) -> str:
    """Sets ``--runner`` to ``LOCAL_RUNNER`` when it is not given; returns the runner's name."""
    standard = options.view_as(StandardOptions)
    if not standard.runner:
        standard.runner = LOCAL_RUNNER
    runner = standard.runner
    return runner if isinstance(runner, str) else type(runner).__name__


def runner_name(options: PipelineOptions) -> str:
    """The runner's short name, for messages: ``FnApiRunner``, ``DataflowRunner``, ..."""
    runner = options.view_as(StandardOptions).runner
    name = runner if isinstance(runner, str) else type(runner).__name__ if runner else "DirectRunner"
    return name.rsplit(".", 1)[-1]


# Beam's options that the help of the Beam commands lists, with autoenc's
# defaults (which differ from Beam's). Beam declares and parses them; these
# declarations are for the help and the command-line check only, and
# tests/test_cli.py checks that Beam knows each one.
RUNNER_FLAGS = (
    flag(
        "--runner",
        topic="runner",
        commands=BEAM_COMMANDS,
        type=str,
        default=None,
        help="Beam runner: DirectRunner, PrismRunner, FlinkRunner, SparkRunner, DataflowRunner, "
        "or a PipelineRunner class's full name.",
        shown=f"{LOCAL_RUNNER}, Beam's runner in this process",
    ),
    flag(
        "--direct_num_workers",
        topic="runner",
        commands=BEAM_COMMANDS,
        type=int,
        default=None,
        help="Worker threads (or processes) of the in-process runner.",
        shown=f"one per core, at most {MAX_LOCAL_WORKERS}",
    ),
    flag(
        "--direct_running_mode",
        topic="runner",
        commands=BEAM_COMMANDS,
        choices=("in_memory", "multi_threading", "multi_processing"),
        default="multi_threading",
        help="How the in-process runner runs its workers.",
    ),
    flag(
        "--save_main_session",
        topic="runner",
        commands=BEAM_COMMANDS,
        action="store_true",
        default=None,
        help="Pickle the main session for remote workers (autoenc's transforms live in "
        "importable modules and do not need it).",
    ),
    flag(
        "--setup_file",
        topic="runner",
        commands=BEAM_COMMANDS,
        type=str,
        default=None,
        help="setup.py of the package to install on remote workers (autoenc's own for Dataflow).",
        shown="none",
    ),
    flag(
        "--temp_location",
        topic="runner",
        commands=BEAM_COMMANDS,
        type=str,
        default=None,
        help="Where the runner keeps temporary files, e.g. gs://bucket/tmp on Dataflow.",
        shown="the runner's own",
    ),
)
FLAGS = INPUT_FLAGS + TRAIN_FLAGS + SCORE_FLAGS + EVALUATE_FLAGS + RUNNER_FLAGS


def command_flags(command: str) -> list[Flag]:
    """The flags of ``command`` declared here (a command's own options class may add more)."""
    return [f for f in FLAGS if command in f.commands]
