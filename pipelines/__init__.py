"""Apache Beam pipelines of autoenc, built on the ``autoenc`` library and
runnable on any Beam runner.

* ``train``, ``score``, ``evaluate``, ``sample``, ``export``, ``demo``: the
  ``autoenc`` commands (``run(argv)`` each).
* ``Score``: the scoring transform, usable after any source.
* ``AutoencoderModelHandler``: a RunInference ``ModelHandler``.
* ``offline_detector``: an ``apache_beam.ml.anomaly`` ``OfflineDetector``.
"""

__all__ = ["AutoencoderModelHandler", "Score", "offline_detector"]


def __getattr__(name: str):
    # Imported when first asked for: ``autoenc --help`` need not load Beam's ML modules.
    if name in __all__:
        from pipelines import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
