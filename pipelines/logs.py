"""The logging of the ``autoenc`` commands: stderr, WARNING by default, with
the lines an operator needs kept at INFO and library noise dropped.

A module of its own, importing nothing but ``logging``: ``python -m
autoenc_beam.<command>`` sets it up from the package's ``__init__``, before the
command's module imports Beam.
"""

from __future__ import annotations

import logging

# Loggers whose INFO lines an operator needs: the library's progress (the
# pipelines print theirs), and the Dataflow runner's job id, monitoring URL and
# job state (Airflow's Dataflow hook finds the job by the "Created job with id:
# [...]" line).
DATAFLOW_CLIENT = "apache_beam.runners.dataflow.internal.apiclient"
OPERATOR_LOGGERS = (
    "autoenc",
    DATAFLOW_CLIENT,
    "apache_beam.runners.dataflow.dataflow_runner",
)


class _Noise(logging.Filter):
    """Drops library log lines that say nothing an operator can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Logged by Beam's BigQuery client module on import when the optional
        # google-apitools package is absent, which autoenc does not use.
        if isinstance(record.msg, str) and record.msg.startswith("apitools not found"):
            return False
        # The Dataflow job's whole definition; the job id and URL lines stay.
        return record.msg != "Create job: %s"


def setup_logging(level: int | None = None) -> None:
    """Logs to stderr at ``level``; by default WARNING, with autoenc's progress
    and Dataflow's job id, monitoring URL and state at INFO. Call it again to
    change the level."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    for logger in (root, logging.getLogger(DATAFLOW_CLIENT)):
        if not any(isinstance(f, _Noise) for f in logger.filters):
            logger.addFilter(_Noise())
    effective = logging.WARNING if level is None else level
    root.setLevel(effective)
    for name in OPERATOR_LOGGERS:
        logging.getLogger(name).setLevel(
            min(effective, logging.INFO) if effective <= logging.WARNING else effective
        )
