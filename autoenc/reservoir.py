"""A bounded, deterministic uniform sample of rows from a stream of chunks.

Thresholds, reports and evaluations summarize every row they see; keeping
every row's figures would make their memory grow with the data. A
``Reservoir`` keeps a uniform random sample of at most ``capacity`` rows
(Vitter's algorithm R), several aligned columns at once, and the count of
all rows. It is seeded, so the same rows in the same order give the same
sample on every machine. While the stream holds at most ``capacity`` rows the
sample is every row, in order.

Example:
    >>> r = Reservoir(capacity=3, seed=0)
    >>> r.add(x=np.arange(2), y=np.arange(2) * 10)
    >>> r.add(x=np.arange(2, 5), y=np.arange(2, 5) * 10)
    >>> r.rows, len(r.columns()["x"]), bool((r.columns()["y"] == r.columns()["x"] * 10).all())
    (5, 3, True)
"""

from __future__ import annotations

import numpy as np

# The default bound on rows kept for thresholds, reports and evaluations: a
# quantile from a uniform sample of 1,000,000 rows is within about 0.001 of
# its level, an ROC-AUC within about 0.001.
MAX_ROWS = 1_000_000


class Reservoir:
    """A uniform sample of at most ``capacity`` rows of aligned columns.

    Args:
        capacity: most rows kept (default ``MAX_ROWS``).
        seed: seeds which rows are kept.
    """

    def __init__(self, capacity: int | None = None, *, seed: int = 0):
        capacity = MAX_ROWS if capacity is None else capacity
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1. Received: {capacity}")
        self.capacity = int(capacity)
        self.rows = 0
        self._rng = np.random.default_rng(seed)
        self._slots: dict[str, np.ndarray] = {}
        self._filled = 0

    def add(self, **columns: np.ndarray) -> None:
        """Adds a chunk: columns of equal length (the same names every time)."""
        arrays = {name: np.asarray(value) for name, value in columns.items()}
        n = len(next(iter(arrays.values()))) if arrays else 0
        if n == 0:
            return
        if not self._slots:
            self._slots = {
                name: np.empty((self.capacity, *a.shape[1:]), dtype=a.dtype) for name, a in arrays.items()
            }
        # Rows that fit in free slots go in order.
        take = min(n, self.capacity - self._filled)
        if take:
            for name, a in arrays.items():
                self._slots[name][self._filled : self._filled + take] = a[:take]
            self._filled += take
        rest = n - take
        if rest:
            # Row number t (0-based, over the whole stream) replaces slot j,
            # drawn uniformly from [0, t], when j < capacity.
            t = np.arange(self.rows + take, self.rows + n)
            j = (self._rng.random(rest) * (t + 1)).astype(np.int64)
            chosen = np.flatnonzero(j < self.capacity)
            if len(chosen):
                slots = j[chosen]
                # Of several rows drawn to one slot, the last one wins.
                _, last = np.unique(slots[::-1], return_index=True)
                keep = chosen[::-1][last]
                for name, a in arrays.items():
                    self._slots[name][j[keep]] = a[take:][keep]
        self.rows += n

    @property
    def sampled(self) -> bool:
        """True when rows were left out (more rows than ``capacity`` were added)."""
        return self.rows > self.capacity

    def columns(self) -> dict[str, np.ndarray]:
        """The kept rows of every column."""
        return {name: slots[: self._filled] for name, slots in self._slots.items()}
