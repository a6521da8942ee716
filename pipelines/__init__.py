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

from typing import TYPE_CHECKING

__all__ = ["AutoencoderModelHandler", "Score", "offline_detector"]

if TYPE_CHECKING:  # what type checkers and editors see; at run time, __getattr__
    from .inference import AutoencoderModelHandler, Score, offline_detector


def __getattr__(name: str):
    # Imported when first asked for: ``autoenc --help`` need not load Beam's ML modules.
    if name in __all__:
        from . import inference

        return getattr(inference, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
