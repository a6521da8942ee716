"""Entry point of the Dataflow Flex Template built from the ``Dockerfile``.

The template launcher runs this file with the template's parameters as
``--name=value`` options. ``--job`` picks the job (``score``, the default, or
``train``); every other option goes to it unchanged, so a template run is the
same as ``autoenc score ...`` / ``autoenc train ...`` with those options.
Parameters are described in ``flex_template_metadata.json`` beside this file.

Example (what the launcher runs):
    python pipelines/flex_template.py --job=score --input=gs://b/in/*.parquet \\
        --model_dir=gs://b/models/m --output=gs://b/runs/2026-11-26 --runner=DataflowRunner ...
"""

from __future__ import annotations

import sys

JOBS = ("score", "train")


def split_job(argv: list[str]) -> tuple[str, list[str]]:
    """Takes ``--job=NAME`` (or ``--job NAME``) out of ``argv``; default ``score``.

    Example:
        >>> split_job(["--job=train", "--input=x"])
        ('train', ['--input=x'])
        >>> split_job(["--input=x"])
        ('score', ['--input=x'])
    """
    job, rest, i = "score", [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--job="):
            job = arg.split("=", 1)[1]
        elif arg == "--job" and i + 1 < len(argv):
            job = argv[i + 1]
            i += 1
        else:
            rest.append(arg)
        i += 1
    return job, rest


def main(argv=None) -> int:
    # Run as a file by the launcher; the image installs this package as
    # autoenc_beam, which its Beam workers import too (not this file's folder).
    from autoenc_beam import cli

    job, rest = split_job(sys.argv[1:] if argv is None else list(argv))
    if job not in JOBS:
        print(
            f"autoenc flex template: --job must be one of {', '.join(JOBS)}. Received: {job!r}",
            file=sys.stderr,
        )
        return 2
    return cli.main([job, *rest])


if __name__ == "__main__":
    sys.exit(main())
