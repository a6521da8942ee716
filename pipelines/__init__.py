"""Apache Beam pipelines of autoenc, built on the ``autoenc`` library and
runnable on any Beam runner.

Installed as ``autoenc_beam`` (from the ``pipelines/`` folder of the source
tree): a name of its own, so that a ``pipelines`` package of the user's, earlier
on ``sys.path`` (an Airflow DAG folder, say), cannot hide it. Inside, modules
import each other relatively, so the same files also run as ``pipelines`` from
a source tree that is not installed.

* ``train``, ``score``, ``evaluate``, ``sample``, ``export``, ``demo``: the
  ``autoenc`` commands (``run(argv)`` each).
* ``Score``: the scoring transform, usable after any source.
* ``AutoencoderModelHandler``: a RunInference ``ModelHandler``.
* ``offline_detector``: an ``apache_beam.ml.anomaly`` ``OfflineDetector``.

The public names of the package are those in ``__all__``. Each is imported on
first use, so ``import autoenc_beam`` (and ``autoenc --help``) does not load Beam's
ML modules.

Example:
    >>> import apache_beam as beam                                    # doctest: +SKIP
    >>> from autoenc_beam import Score                                   # doctest: +SKIP
    >>> with beam.Pipeline() as p:                                    # doctest: +SKIP
    ...     result = p | beam.io.ReadFromCsv("rows.csv") | Score("models/demo")
    ...     result.scores | beam.Map(print)
"""

import sys
from typing import TYPE_CHECKING

# ``python -m autoenc_beam.<command>``: set up the command's logging before its
# module imports Beam, as the ``autoenc`` program does, so that Beam's import
# warning about the absent google-apitools package (which autoenc does not
# use) is not shown. While Python locates the module of ``-m``, ``sys.argv[0]``
# is "-m" (documented); this package is then being imported for it. Importing
# ``autoenc_beam`` from anyone's code leaves their logging alone.
if sys.argv[:1] == ["-m"] and any(
    a == __name__ or a.startswith(f"{__name__}.") for a in getattr(sys, "orig_argv", ())
):
    from .logs import setup_logging

    setup_logging()

__all__ = ["AutoencoderModelHandler", "Score", "offline_detector"]

if TYPE_CHECKING:  # what type checkers and editors see; at run time, __getattr__
    from .handler import AutoencoderModelHandler, offline_detector
    from .inference import Score


def __getattr__(name: str):
    # Imported when first asked for: ``autoenc --help`` need not load Beam's ML modules.
    if name == "Score":
        from .inference import Score

        return Score
    if name in __all__:
        from . import handler

        return getattr(handler, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
