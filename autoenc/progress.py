"""Training progress as a Keras callback: one live line on a terminal, a few log
lines elsewhere.

Keras' own display writes a progress bar per epoch (``verbose=1``) or a line per
epoch (``verbose=2``): 500 lines in a log for a 500-epoch fit. ``TrainingProgress``
instead either rewrites one line in place (``live=True``: epoch, loss,
val_loss, elapsed time, an ETA, learning rate) or, for logs, sends a
line through the ``autoenc.progress`` logger after the first epoch, every few
epochs or minutes after that, and at the end.

Example:
    >>> progress_mode(0), progress_mode(1), progress_mode(2)
    (None, 'live', 'log')
    >>> format_duration(75), format_duration(3725)
    ('1:15', '1:02:05')
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
import time

import keras

LOGGER = "autoenc.progress"
_log = logging.getLogger(LOGGER)

# In log mode, a line at least every this many epochs (``max`` of it and a
# twentieth of the epochs, so that a long fit logs about twenty lines) and at
# least every this many seconds when epochs are slow.
LOG_EVERY_EPOCHS = 10
LOG_EVERY_SECONDS = 60.0
# The live line is redrawn at most this often during an epoch.
LIVE_REFRESH_SECONDS = 0.2


def progress_mode(verbose: int | str) -> str | None:
    """What a ``verbose`` setting shows: ``None`` (0), ``"live"`` (1: one line
    rewritten in place), ``"log"`` (2: a log line every few epochs and at the
    end) or, for ``"auto"``, live when standard error is a terminal, else log.

    Raises:
        ValueError: any other value.
    """
    if verbose == "auto":
        return "live" if _isatty(sys.stderr) else "log"
    modes = {0: None, 1: "live", 2: "log"}
    if isinstance(verbose, bool) or verbose not in modes:
        raise ValueError(f"verbose must be 0, 1, 2 or 'auto'. Received: verbose={verbose!r}")
    return modes[verbose]


def format_duration(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TrainingProgress(keras.callbacks.Callback):
    """Reports a fit's progress; pass it in ``callbacks`` with ``verbose=0``.

    Args:
        live: rewrite one line in place on ``stream`` (a terminal, a notebook);
            otherwise log lines through the ``autoenc.progress`` logger.
        stream: where the live line goes (default: ``sys.stderr`` at the time
            of the fit).
        stopper: the early-stopping callback of the same fit, if any: its
            ``wait`` and ``patience`` attributes are shown as epochs without
            improvement.
        log_every_epochs: in log mode, a line at least every this many epochs
            (default: ``LOG_EVERY_EPOCHS`` or a twentieth of the epochs,
            whichever is more).
        log_every_seconds: in log mode, a line after an epoch that ends this
            long after the last line.
        clock: seconds as a float (tests pass their own).

    Example:
        >>> import io
        >>> import numpy as np
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
        >>> model.compile(loss="mse")
        >>> out = io.StringIO()
        >>> x = np.zeros((8, 2), "float32")
        >>> _ = model.fit(x, x, validation_data=(x, x), epochs=3, verbose=0,
        ...               callbacks=[TrainingProgress(live=True, stream=out)])
        >>> out.getvalue().rsplit("\\r", 1)[-1].startswith("trained 3 of 3 epochs in ")
        True
    """

    # Keras calls the batch hooks of callbacks that say so on a worker thread,
    # overlapping the training steps, as it does when no callback has such a
    # hook; these only read the clock and, at most every LIVE_REFRESH_SECONDS,
    # write a line (Keras waits for them before each epoch's end).
    async_safe = True

    def __init__(
        self,
        *,
        live: bool,
        stream=None,
        stopper=None,
        log_every_epochs: int | None = None,
        log_every_seconds: float = LOG_EVERY_SECONDS,
        clock=time.monotonic,
    ):
        super().__init__()
        self.live = live
        self.stream = stream
        self.stopper = stopper
        self.log_every_epochs = log_every_epochs
        self.log_every_seconds = log_every_seconds
        self.clock = clock

    def on_train_begin(self, logs=None):
        params = self.params or {}
        self._epochs = int(params.get("epochs") or 0)
        self._steps = params.get("steps")
        self._every = self.log_every_epochs or max(LOG_EVERY_EPOCHS, math.ceil(self._epochs / 20))
        self._started = self._last_line = self._last_draw = self.clock()
        self._epoch = 0  # epochs finished
        self._values = {}
        self._best = (math.inf, 0)  # (val_loss, epoch)
        self._width = 0

    def on_train_batch_end(self, batch, logs=None):
        # Only the live line is redrawn during an epoch (a long epoch should
        # not look stuck), and at most every LIVE_REFRESH_SECONDS.
        if not self.live:
            return
        now = self.clock()
        if now - self._last_draw >= LIVE_REFRESH_SECONDS:
            self._draw(self._describe(now, step=batch + 1), now)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        now = self.clock()
        self._epoch = epoch + 1
        lr = logs.get("learning_rate")
        self._values = {
            "loss": logs.get("loss"),
            "val_loss": logs.get("val_loss"),
            "lr": lr if lr is not None else self._learning_rate(),
        }
        val_loss = self._values["val_loss"]
        if val_loss is not None and val_loss < self._best[0]:
            self._best = (float(val_loss), self._epoch)
        if self.live:
            self._draw(self._describe(now), now)
        elif (
            self._epoch == 1
            or self._epoch % self._every == 0
            or now - self._last_line >= self.log_every_seconds
        ):
            self._log(self._describe(now))
            self._last_line = now

    def on_train_end(self, logs=None):
        now = self.clock()
        text = f"trained {self._epoch} of {self._epochs} epochs in {format_duration(now - self._started)}"
        if self._epoch < self._epochs:
            text += ", stopped early"
            wait, patience = self._stall()
            if patience is not None and wait >= patience:
                text += f" ({patience} epochs without improvement)"
        if self._best[1]:
            text += f"; best val_loss {self._best[0]:.4g} at epoch {self._best[1]}"
        if self.live:
            # The last frame stays: it may wrap, it is not redrawn.
            self._draw(text, now, fit=False)
            self._write("\n")
        else:
            self._log(text)

    # -- helpers -----------------------------------------------------------------

    def _describe(self, now: float, step: int | None = None) -> str:
        """The progress line: the epoch (and the step of a running one), the last
        epoch's losses, the time so far and the most time left, the learning
        rate, the epochs without improvement. The order is by importance: a
        live line too wide for the terminal loses its end."""
        epoch = f"epoch {self._epoch + (step is not None)}/{self._epochs}"
        if step is not None and self._steps:
            epoch += f" step {step}/{self._steps}"
        parts = [epoch]
        for name in ("loss", "val_loss"):
            if self._values.get(name) is not None:
                parts.append(f"{name} {self._values[name]:.4g}")
        elapsed = now - self._started
        parts.append(f"elapsed {format_duration(elapsed)}")
        if self._epoch:
            # Assumes every epoch runs: early stopping usually ends the fit sooner.
            left = format_duration((self._epochs - self._epoch) * elapsed / self._epoch)
            parts.append(f"ETA {left}" if self.live else f"ETA at most {left}")
        if self._values.get("lr") is not None:
            parts.append(f"lr {self._values['lr']:.3g}")
        wait, patience = self._stall()
        if patience is not None:
            parts.append(f"no improvement {wait}/{patience}")
        return "  ".join(parts) if self.live else ", ".join(parts)

    def _stall(self) -> tuple[int, int | None]:
        if self.stopper is None:
            return 0, None
        return int(getattr(self.stopper, "wait", 0)), getattr(self.stopper, "patience", None)

    def _learning_rate(self):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            return None
        return float(keras.ops.convert_to_numpy(optimizer.learning_rate))

    def _draw(self, text: str, now: float, *, fit: bool = True) -> None:
        """Rewrites the live line; ``fit``: cut to the terminal's width (a
        wrapped line cannot be rewritten in place)."""
        stream = self._stream()
        width = shutil.get_terminal_size((100, 20)).columns - 1 if fit and _isatty(stream) else 0
        if width > 0:
            text = text[:width]
        # Blanks clear what a longer previous line left on the terminal.
        self._write("\r" + text + " " * max(0, self._width - len(text)))
        self._width = len(text)
        self._last_draw = now

    def _write(self, text: str) -> None:
        stream = self._stream()
        stream.write(text)
        stream.flush()

    def _stream(self):
        return self.stream if self.stream is not None else sys.stderr

    def _log(self, text: str) -> None:
        _log.info("%s", text)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
