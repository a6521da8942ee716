import io
import logging
import types

import keras
import numpy as np
import pytest

from autoenc import progress
from autoenc.progress import TrainingProgress, progress_mode


class Terminal(io.StringIO):
    def isatty(self):
        return True


def tiny_fit(epochs, callback):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    model.fit(x, x, validation_data=(x, x), epochs=epochs, batch_size=16, verbose=0, callbacks=[callback])


def progress_records(caplog):
    return [r.getMessage() for r in caplog.records if r.name == progress.LOGGER]


def drive(callback, epochs, *, seconds_per_epoch, stop_after=None):
    """Calls the callback as a fit of ``epochs`` epochs would, on a fake clock."""
    now = [0.0]
    callback.clock = lambda: now[0]
    callback.set_params({"epochs": epochs, "steps": 10, "verbose": 0})
    callback.on_train_begin()
    for epoch in range(stop_after or epochs):
        callback.on_epoch_begin(epoch)
        now[0] += seconds_per_epoch
        loss = 1.0 / (epoch + 1)
        callback.on_epoch_end(epoch, {"loss": loss, "val_loss": loss, "learning_rate": 1e-3})
    callback.on_train_end()


def test_live_mode_rewrites_one_line_on_a_terminal(caplog):
    caplog.set_level(logging.INFO, logger=progress.LOGGER)
    out = Terminal()
    tiny_fit(4, TrainingProgress(live=True, stream=out))
    text = out.getvalue()
    # One line, redrawn with carriage returns, ended once.
    assert text.count("\n") == 1 and text.endswith("\n")
    frames = [f.strip() for f in text.split("\r") if f.strip()]
    assert len(frames) >= 5  # at least one per epoch and the summary
    for epoch in range(1, 5):
        frame = next(f for f in frames if f.startswith(f"epoch {epoch}/4 ") and "loss" in f)
        for part in ("loss ", "val_loss ", "elapsed ", "ETA ", "lr "):
            assert f"  {part}" in frame, (part, frame)
    assert frames[-1].startswith("trained 4 of 4 epochs in ")
    assert "best val_loss" in frames[-1]
    assert progress_records(caplog) == []


def test_live_line_fits_the_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    out = Terminal()
    drive(TrainingProgress(live=True, stream=out), 5, seconds_per_epoch=1.0)
    *frames, summary = out.getvalue().rstrip("\n").split("\r")[1:]
    assert frames and all(len(f.rstrip()) <= 39 for f in frames)
    # The summary is not redrawn: it is written whole.
    assert summary.startswith("trained 5 of 5 epochs in 0:05") and len(summary) > 39


def test_log_mode_writes_log_lines_and_nothing_on_the_stream(caplog):
    caplog.set_level(logging.INFO, logger=progress.LOGGER)
    out = io.StringIO()
    tiny_fit(3, TrainingProgress(live=False, stream=out))
    assert out.getvalue() == ""
    lines = progress_records(caplog)
    # The first epoch, then (3 < LOG_EVERY_EPOCHS) only the summary.
    assert len(lines) == 2
    assert lines[0].startswith("epoch 1/3, loss ")
    for part in ("val_loss ", "elapsed ", "ETA at most ", "lr "):
        assert f", {part}" in lines[0], (part, lines[0])
    assert lines[1].startswith("trained 3 of 3 epochs in ")
    assert all("\r" not in line for line in lines)


def test_log_mode_lines_stay_few_over_many_epochs(caplog):
    caplog.set_level(logging.INFO, logger=progress.LOGGER)
    drive(TrainingProgress(live=False), 500, seconds_per_epoch=0.5)
    lines = progress_records(caplog)
    # Epoch 1, every 25th epoch (a twentieth of 500), the summary.
    assert 20 <= len(lines) <= 22
    assert lines[1].startswith("epoch 25/500,")
    assert lines[-1].startswith("trained 500 of 500 epochs in 4:10")


def test_log_mode_logs_slow_epochs_by_time(caplog):
    caplog.set_level(logging.INFO, logger=progress.LOGGER)
    drive(TrainingProgress(live=False, log_every_seconds=60.0), 6, seconds_per_epoch=25.0)
    lines = progress_records(caplog)
    # Epoch 1, then the first epoch ending 60 s or more after the last line.
    assert [line.split(",")[0] for line in lines[:-1]] == ["epoch 1/6", "epoch 4/6"]


def test_summary_says_why_the_fit_stopped(caplog):
    caplog.set_level(logging.INFO, logger=progress.LOGGER)
    stopper = types.SimpleNamespace(wait=20, patience=20)
    drive(TrainingProgress(live=False, stopper=stopper), 500, seconds_per_epoch=1.0, stop_after=57)
    lines = progress_records(caplog)
    assert "no improvement 20/20" in lines[0]
    assert lines[-1] == (
        "trained 57 of 500 epochs in 0:57, stopped early (20 epochs without improvement); "
        "best val_loss 0.01754 at epoch 57"
    )


def test_progress_mode(monkeypatch):
    assert [progress_mode(v) for v in (0, 1, 2)] == [None, "live", "log"]
    monkeypatch.setattr("sys.stderr", Terminal())
    assert progress_mode("auto") == "live"
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert progress_mode("auto") == "log"
    with pytest.raises(ValueError, match="verbose must be 0, 1, 2 or 'auto'. Received: verbose=3"):
        progress_mode(3)


def test_estimator_is_quiet_by_default(capsys, caplog):
    from autoenc import Autoencoder

    caplog.set_level(logging.INFO, logger=progress.LOGGER)
    x = np.random.default_rng(0).normal(size=(300, 9))
    Autoencoder(latent_dim=3, hidden_units=(8,), epochs=3).fit(x)
    captured = capsys.readouterr()
    assert "\r" not in captured.err and "epoch" not in captured.err + captured.out
    assert progress_records(caplog) == []


def test_training_fit_reports_through_the_callback(tmp_path, caplog):
    from autoenc.preprocessing import MomentStats, Normalizer
    from autoenc.training import TrainingConfig, fit, staged_file

    caplog.set_level(logging.INFO, logger=progress.LOGGER)
    x = np.random.default_rng(0).normal(size=(400, 4))
    paths = {}
    for name, rows in (("train", x[:300]), ("val", x[300:])):
        paths[name] = [str(tmp_path / f"{name}.tfrecord")]
        (tmp_path / f"{name}.tfrecord").write_bytes(staged_file(rows))
    result = fit(
        TrainingConfig(latent_dim=2, hidden_units=(8,), epochs=12, n_init=1, init="random"),
        n_features=4,
        normalizer=Normalizer.from_stats(MomentStats.from_array(x[:300])),
        train_files=paths["train"],
        val_files=paths["val"],
        n_train=300,
        n_val=100,
        verbose=2,
    )
    lines = progress_records(caplog)
    epochs = len(result.loss)
    assert lines[0].startswith("epoch 1/12, ") and "no improvement 0/20" in lines[0]
    assert lines[-1].startswith(f"trained {epochs} of 12 epochs")
    assert len(lines) == 2 + (epochs >= 10)


def test_validate_logs_rows_read_so_far_at_most_every_interval(monkeypatch, caplog):
    import pyarrow as pa

    from autoenc.schema import infer_spec
    from autoenc_beam import io, transforms

    caplog.set_level(logging.INFO, logger=progress.LOGGER)
    table = pa.table({"x1": [1.0, 2.0, None], "x2": [0.5, 0.25, 0.125]})
    spec = infer_spec(table.schema, features=["x1", "x2"], source="test")
    chunk = io.Chunk("test", 0, table.to_batches()[0], None, 0, None)
    fn = transforms._ValidateFn(spec, (), None, None)
    fn.setup()
    for _ in range(3):
        list(fn.process(chunk))
    assert progress_records(caplog) == []  # well under PROGRESS_SECONDS
    monkeypatch.setattr(transforms, "PROGRESS_SECONDS", 0.0)
    list(fn.process(chunk))
    (line,) = progress_records(caplog)
    assert line.startswith("12 rows read so far on this worker (4 rejected), ")
