"""autoenc: dimensionality reduction and anomaly scoring with autoencoders.

The library half of autoenc. It never imports Apache Beam, so everything here
works from a notebook or a plain script; the Beam pipelines live in
``pipelines/`` and are thin wrappers around these modules:

* ``schema``: which columns are features, their dtypes; inferred from Arrow.
* ``validation``: per-batch row checks and the rejected-rows records.
* ``preprocessing``: mergeable normalization statistics.
* ``models``: Keras model factories.
* ``training``: ``TrainingConfig`` and the streaming ``tf.data`` fit.
* ``scoring``: latent vectors, reconstruction error, thresholds.
* ``artifact``: the versioned model artifact (``model.keras`` + ``metadata.json``).
"""

__version__ = "0.1.0"
