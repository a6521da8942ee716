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
* ``trainer``: training from staged rows (shared by the CLI and the estimator).
* ``estimator``: ``Autoencoder``, the scikit-learn / PyOD-style estimator
  (``from autoenc import Autoencoder``).
"""

__version__ = "0.1.0"
__all__ = ["Autoencoder", "__version__"]


def __getattr__(name: str):
    # The estimator pulls in scikit-learn: imported when first asked for, so
    # ``import autoenc`` stays light.
    if name == "Autoencoder":
        from autoenc.estimator import Autoencoder

        return Autoencoder
    raise AttributeError(f"module 'autoenc' has no attribute {name!r}")
