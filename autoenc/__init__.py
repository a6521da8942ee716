"""autoenc: dimensionality reduction and anomaly scoring with autoencoders.

The library half of autoenc. It never imports Apache Beam, so everything here
works from a notebook or a plain script; the Beam pipelines live in
``pipelines/`` (installed as ``autoenc_beam``) and are thin wrappers around
these modules:

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

The public names of the package are those in ``__all__``: the estimator, the
artifact loader and the errors a caller can catch. Each is imported on first
use, so ``import autoenc`` alone loads neither scikit-learn nor TensorFlow.

Example:
    >>> from autoenc import Autoencoder, AutoencError, load_artifact  # doctest: +SKIP
    >>> ae = Autoencoder(latent_dim=2, epochs=50).fit(X)              # doctest: +SKIP
    >>> errors = ae.decision_function(X_new)  # higher: more anomalous # doctest: +SKIP
    >>> artifact = load_artifact("models/demo")                       # doctest: +SKIP
"""

from typing import TYPE_CHECKING

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "AutoencError",
    "Autoencoder",
    "ConfigError",
    "InputError",
    "ModelArtifact",
    "__version__",
    "list_versions",
    "load_artifact",
]

# Where each public name is defined (all of ``__all__`` but ``__version__``).
_EXPORTS = {
    "Autoencoder": "autoenc.estimator",
    "ModelArtifact": "autoenc.artifact",
    "load_artifact": "autoenc.artifact",
    "list_versions": "autoenc.artifact",
    "AutoencError": "autoenc.errors",
    "InputError": "autoenc.errors",
    "ArtifactError": "autoenc.errors",
    "ConfigError": "autoenc.errors",
}

if TYPE_CHECKING:  # what type checkers and editors see; at run time, __getattr__
    from autoenc.artifact import ModelArtifact, list_versions, load_artifact
    from autoenc.errors import ArtifactError, AutoencError, ConfigError, InputError
    from autoenc.estimator import Autoencoder


def __getattr__(name: str):
    # Imported when first asked for: the estimator pulls in scikit-learn, and
    # fitting or loading a model TensorFlow; ``import autoenc`` stays light.
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'autoenc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
