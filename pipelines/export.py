"""``autoenc export``: a model version as a servable TensorFlow SavedModel.

Input: a model directory written by ``autoenc train`` (its ``LATEST`` version,
or ``--model_version``). Output: ``--output/<n>/``, a SavedModel in the
numbered-version layout TF Serving and Vertex AI load (``n``: one more than the
largest number already there, 1 for the first). Its ``serving_default``
signature takes the raw feature columns (float64, images and sequences in
their shape) and returns ``latent``, ``reconstruction_error`` (higher = more
anomalous), ``anomaly_score``, ``is_anomaly`` and ``latent_distance``: the
numbers ``autoenc score`` writes, with the normalization and the threshold
inside the graph (``autoenc.export``; ``docs/serving.md``). Runs in this
process, no Beam pipeline.

Example:
    autoenc export --model_dir models/demo --output serving/demo
    python -m autoenc_beam.export --model_dir gs://bucket/models/demo \\
        --model_version 20261126T171500Z-3f9a1c --output gs://bucket/serving/demo
"""

from __future__ import annotations

import argparse
import json
import sys

from autoenc.errors import ConfigError
from autoenc.export import METADATA_ASSET, export_saved_model


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ConfigError(f"Invalid option value: {message}. Run with --help for usage.")


class ExportOptions:
    """Options of 'autoenc export'."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--model_dir", type=str, required=True, help="Model directory 'autoenc train' wrote."
        )
        parser.add_argument(
            "--model_version",
            type=str,
            default=None,
            help="Model version to export. Default: the one MODEL_DIR/LATEST names.",
        )
        parser.add_argument(
            "--output",
            type=str,
            required=True,
            help="Folder of numbered SavedModels (local or gs://); the export goes to the next "
            "number in it, e.g. OUTPUT/1. Point TF Serving's --model_base_path here.",
        )


def run(argv=None) -> str:
    """Exports the model version; returns the new version folder."""
    parser = _Parser(prog="autoenc export", add_help=False, allow_abbrev=False)
    ExportOptions._add_argparse_args(parser)
    opt = parser.parse_args(list(argv or []))
    path = export_saved_model(opt.model_dir, opt.output, version=opt.model_version)
    import tensorflow as tf

    with tf.io.gfile.GFile(f"{path}/assets/{METADATA_ASSET}") as f:
        exported = json.load(f)
    print(
        f"autoenc export: wrote model version {exported['model_version']} of {opt.model_dir} "
        f"({exported['model_kind']}) as a SavedModel to {path}",
        file=sys.stderr,
    )
    return path


def main(argv=None):
    from .cli import run_command

    return run_command(run, sys.argv[1:] if argv is None else argv, "export")


if __name__ == "__main__":
    sys.exit(main())
