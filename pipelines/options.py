"""Command-line options of the autoenc pipelines, as Beam ``PipelineOptions``.

Every standard Beam option (``--runner``, ``--direct_num_workers``,
``--setup_file``, ...) is accepted alongside these.
"""

from __future__ import annotations

import argparse
import math
import os

from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
)

from autoenc.errors import ConfigError
from autoenc.preprocessing import EXTREME_SPREADS
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

FORMATS = ("parquet", "tfrecord")
DEFAULTS = TrainingConfig()
READ_BATCH_BYTES = 64 * 2**20


def int_list(text: str) -> tuple[int, ...]:
    """'100,100' -> (100, 100)."""
    return tuple(int(part) for part in text.split(",") if part.strip())


def name_list(text: str) -> tuple[str, ...]:
    """'a, b' -> ('a', 'b')."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


class InputOptions(PipelineOptions):
    """Where the records are and how they are stored."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--input",
            type=str,
            default=None,
            help="Glob of the input files on any Beam filesystem, e.g. 'data/*.parquet'.",
        )
        parser.add_argument(
            "--format",
            choices=FORMATS,
            default=None,
            type=str,
            help="Input format; inferred from the file extension when absent "
            "(.parquet; .tfrecord, .tfrecords, .tfr, optionally followed by .gz).",
        )
        parser.add_argument(
            "--model_dir",
            type=str,
            default=None,
            help="Model directory: train writes a new version into it, score reads one.",
        )
        parser.add_argument(
            "--read_batch_rows",
            type=int,
            default=65536,
            help="Most rows per Arrow batch read from the input. Default: 65536.",
        )
        parser.add_argument(
            "--read_batch_bytes",
            type=int,
            default=READ_BATCH_BYTES,
            help="Most bytes of memory per batch read from the input (the row's width decides "
            "the rows: a 600 KB image row gets about 50 a batch); bounds worker memory. "
            f"Default: {READ_BATCH_BYTES} (64 MiB).",
        )


class TrainOptions(PipelineOptions):
    """Options of 'autoenc train'."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--features",
            type=name_list,
            default=None,
            help="Comma-separated feature columns, in model order. Default: every "
            "numeric column (scalar, or lists of numbers for images and sequences) that "
            "is not a key column.",
        )
        parser.add_argument(
            "--shape",
            action="append",
            default=None,
            help="Shape of a tensor feature (an image H,W,C or a sequence T,F), e.g. "
            "--shape 28,28,1 or --shape pixels=28,28,1; repeat once per tensor feature. "
            "Default: fixed by a fixed_size_list type, else the first row's nested lengths.",
        )
        parser.add_argument(
            "--key_columns",
            type=name_list,
            default=(),
            help="Comma-separated columns that identify a row; copied to the scores.",
        )
        parser.add_argument(
            "--model",
            choices=MODEL_KINDS,
            default=DEFAULTS.model,
            help="Model kind: dense (fully connected), sparse (L1 penalty on a ReLU "
            "latent), vae (variational; latent = posterior mean), pca (linear "
            "baseline fitted by SVD), conv (one image feature), lstm (one sequence "
            f"feature). Default: {DEFAULTS.model}.",
        )
        parser.add_argument(
            "--loss",
            choices=LOSSES,
            default=DEFAULTS.loss,
            help="mse (mean squared error) or bce (binary cross-entropy on values "
            "min-max scaled to [0, 1], sigmoid output; for images). auto: bce for conv, "
            f"mse otherwise. Default: {DEFAULTS.loss}.",
        )
        parser.add_argument(
            "--normalization",
            choices=NORMALIZATION_CHOICES,
            default=DEFAULTS.normalization,
            help="zscore (mean 0, standard deviation 1; linear output) or minmax "
            "(training values scaled to [0, 1]; sigmoid output, so the reconstruction "
            "stays inside the range the training rows span and a row beyond it keeps "
            "an error: better anomaly scores for anomalies that are extreme versions "
            "of normal rows). auto: minmax for bce, zscore otherwise. "
            f"Default: {DEFAULTS.normalization}.",
        )
        parser.add_argument(
            "--sparsity",
            type=float,
            default=DEFAULTS.sparsity,
            help=f"sparse only: weight of the L1 penalty on the latent. Default: {DEFAULTS.sparsity}.",
        )
        parser.add_argument(
            "--beta",
            type=float,
            default=DEFAULTS.beta,
            help=f"vae only: weight of the KL term. Default: {DEFAULTS.beta}.",
        )
        parser.add_argument(
            "--latent_dim",
            type=int,
            default=None,
            help="Width of the latent vector. Default: ceil(sqrt(number of features)).",
        )
        parser.add_argument(
            "--hidden_units",
            type=int_list,
            default=DEFAULTS.hidden_units,
            help="Comma-separated encoder layer widths, mirrored in the decoder. "
            f"Default: {','.join(map(str, DEFAULTS.hidden_units))}.",
        )
        parser.add_argument(
            "--activation",
            type=str,
            default=DEFAULTS.activation,
            help=f"Hidden-layer activation (a Keras name). Default: {DEFAULTS.activation}.",
        )
        parser.add_argument(
            "--epochs",
            type=int,
            default=DEFAULTS.epochs,
            help=f"Most training epochs; early stopping usually ends sooner. Default: {DEFAULTS.epochs}.",
        )
        parser.add_argument(
            "--batch_size",
            type=int,
            default=DEFAULTS.batch_size,
            help=f"Rows per gradient step. Default: {DEFAULTS.batch_size}.",
        )
        parser.add_argument(
            "--learning_rate",
            type=float,
            default=DEFAULTS.learning_rate,
            help=f"Adam's initial learning rate. Default: {DEFAULTS.learning_rate}.",
        )
        parser.add_argument(
            "--patience",
            type=int,
            default=DEFAULTS.patience,
            help="Epochs without validation improvement before training stops "
            f"(best weights kept). Default: {DEFAULTS.patience}.",
        )
        parser.add_argument(
            "--min_improvement",
            type=float,
            default=DEFAULTS.min_improvement,
            help="Relative fall in validation loss that counts as an improvement for "
            "--patience (smaller falls still keep the better weights). "
            f"Default: {DEFAULTS.min_improvement}.",
        )
        parser.add_argument(
            "--validation_fraction",
            type=float,
            default=DEFAULTS.validation_fraction,
            help="Share of rows held out for early stopping and the threshold. "
            f"Default: {DEFAULTS.validation_fraction}.",
        )
        parser.add_argument(
            "--contamination",
            type=float,
            default=None,
            help="Expected share of anomalies: the threshold is the (1 - contamination) "
            f"quantile of validation errors. train: default {DEFAULTS.contamination}. "
            "score and evaluate: override the model's threshold with that quantile of its "
            "stored validation errors.",
        )
        parser.add_argument(
            "--threshold",
            type=float,
            default=None,
            help="A fixed anomaly threshold on reconstruction_error (instead of "
            "--contamination). score and evaluate: override the model's threshold.",
        )
        parser.add_argument(
            "--split_by",
            choices=SPLITS,
            default="position",
            help="How rows are split into training and validation (with --seed and "
            "--validation_fraction): 'position' by file path and row number; 'key' by "
            "the values of --key_columns, so the same rows give the same split "
            "wherever the files lie and however the data is cut into files, and "
            "duplicate keys stay on one side. Default: position.",
        )
        parser.add_argument(
            "--label_column",
            type=str,
            default=None,
            help="A column of known labels (true or 1: anomaly, false or 0: normal; a row "
            "with another value is rejected). train: rows labeled anomalous are kept "
            "out of training, and the threshold is chosen on the labeled rows for the "
            "best F1, or for --target_fpr. evaluate: the labels to evaluate against "
            "(default: the model's).",
        )
        parser.add_argument(
            "--target_fpr",
            type=float,
            default=None,
            help="With --label_column: the threshold flags at most this share of the "
            "validation rows labeled normal (instead of the best F1).",
        )
        parser.add_argument(
            "--init",
            choices=INITS,
            default=DEFAULTS.init,
            help="How the first start is made: 'spectral' fits the encoder to the "
            "spectral coordinates of a sample of the rows (guards against folded "
            "encodings), 'random' draws it like the others, 'auto' is spectral for a "
            f"latent at most {NARROW_LATENT} wide and random otherwise. Default: {DEFAULTS.init}.",
        )
        parser.add_argument(
            "--n_init",
            type=int,
            default=DEFAULTS.n_init,
            help="Starts tried: each gets short warm-ups, the worse half is dropped "
            "after each, and the last is trained to the end. Default: "
            f"{NARROW_N_INIT} for a latent at most {NARROW_LATENT} wide, else 1.",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=DEFAULTS.seed,
            help=f"Seeds the train/validation split, the weights and shuffling. Default: {DEFAULTS.seed}.",
        )
        parser.add_argument(
            "--extreme_value_spreads",
            type=float,
            default=EXTREME_SPREADS,
            help="A training row with a value farther than this many robust spreads (interquartile "
            "ranges of a sample taken at launch) from its feature's median is rejected as too "
            "extreme to train on ('inf': none is). Default: 1e6.",
        )


class ScoreOptions(PipelineOptions):
    """Options of 'autoenc score'."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--output",
            type=str,
            default=None,
            help="Output directory. score writes scores/, rejected/ and summary.json there; "
            "evaluate writes evaluation.json, report.html and rejected/.",
        )
        parser.add_argument(
            "--model_version",
            type=str,
            default=None,
            help="Model version to score with. Default: the one MODEL_DIR/LATEST names.",
        )
        parser.add_argument(
            "--passthrough",
            action="store_true",
            default=False,
            help="Copy every input column to the scores, not only the key columns.",
        )
        parser.add_argument(
            "--explain_top_k",
            type=int,
            default=3,
            help="Write, per row, the k features with the largest share of its "
            "reconstruction error, with their shares (column top_features; 0: none). Default: 3.",
        )
        parser.add_argument(
            "--error_map",
            action="store_true",
            default=False,
            help="Also write each value's squared error (column error_map: for an image "
            "feature, a per-pixel error map, flattened in the feature's shape).",
        )
        parser.add_argument(
            "--drift_max_ks",
            type=float,
            default=0.2,
            help="Warn when the KS statistic between this run's errors and the model's "
            "validation errors exceeds this (0: same distribution, 1: disjoint). Default: 0.2.",
        )
        parser.add_argument(
            "--drift_max_median_ratio",
            type=float,
            default=2.0,
            help="Warn when this run's median error is more than this many times the "
            "validation median (or less than its inverse). Default: 2.0.",
        )


class EvaluateOptions(PipelineOptions):
    """Options of 'autoenc evaluate' (besides --input, --model_dir, --output,
    --model_version, --label_column, --threshold and --contamination)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--train_input",
            type=str,
            default=None,
            help="Glob of the model's training data, to fit the PCA and IsolationForest "
            "baselines on the same training rows. Default: the input the model records.",
        )
        parser.add_argument(
            "--baseline_rows",
            type=int,
            default=100_000,
            help="Most training rows (a deterministic sample) the baselines are fitted on. Default: 100000.",
        )
        parser.add_argument(
            "--precision_at_k",
            type=int,
            default=None,
            help="k of precision@k (the share labeled anomalous among the k highest-scoring "
            "rows). Default: the number of rows labeled anomalous.",
        )


class _StrictParser(argparse.ArgumentParser):
    """Raises ``ConfigError`` instead of printing every Beam option and exiting.

    A plain ``argparse`` parser (Beam's own parser class is private): options
    classes that declare templated options call ``add_value_provider_argument``,
    which here declares the option by name and type only; only the names and
    values of the options given are checked.
    """

    def add_value_provider_argument(self, *args, **kwargs):
        if args and not args[0].startswith("-") and kwargs.get("nargs") is None:
            kwargs["nargs"] = "?"
        self.add_argument(*args, **kwargs)

    def error(self, message):
        raise ConfigError(f"Invalid option value: {message}. Run with --help for usage.")


def check_known_args(argv: list[str]) -> None:
    """Fails on an option no autoenc or Beam options class knows.

    Beam only logs a warning for unknown options and drops them, so a typo such
    as ``--epoch 5`` would silently train with the default.

    Raises:
        ConfigError: naming the unknown options.
    """
    parser = _StrictParser(allow_abbrev=False, add_help=False)
    # The same set of classes PipelineOptions.get_all_options parses with.
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(argv)
    unknown = [a.split("=", 1)[0] for a in unknown if a.startswith("-")]
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
