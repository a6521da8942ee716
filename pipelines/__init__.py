"""Apache Beam pipelines of autoenc: ``train`` and ``score``, built on the
``autoenc`` library and runnable on any Beam runner."""
