"""What the engine remembers per instrument, and its snapshot.

Every array the state holds is replaced, never written in place, once committed:
``process`` works on copies and swaps them in at the end (so an exception leaves the
state as it was), and a snapshot is a frozen record of references to those arrays,
taken without copying and without waiting for anything.

Small until the instrument trades: a new state holds no arrays at all; the first
trade allocates the window ring (7.4 KB), the training samples grow with the
trades up to ``train_size`` rows of ``training_columns`` (6 by default), and the
calibration ring (8 KB) and the forest arrive with the first models.
"""

from __future__ import annotations

import math
import pickle
import zlib
from dataclasses import dataclass, field, fields

import numpy as np

from models.detectors.elliptic_envelope import EnvelopeModel
from models.detectors.flat_trees import FlatForest
from models.guard import GuardMemory, TradeGuard
from models.incidents import IncidentTracker
from models.kernel import F_MOVE_WEIGHT, F_SWING_WEIGHT, F_TAIL_WEIGHT, I_HEADER, fstate_length, ring_length
from models.training import PendingRefit, RefitJob


@dataclass(frozen=True)
class ServingModels:
    """The models scoring an instrument's trades now (one generation)."""

    generation: int
    forest: FlatForest
    envelope: EnvelopeModel
    params: np.ndarray
    """Thresholds, z-score statistics and envelope parameters packed for the kernel."""


@dataclass(frozen=True)
class Tally:
    """What an instrument's anomalies add up to since its state started (the summary's totals)."""

    by_level: tuple[int, int, int, int] = (0, 0, 0, 0)
    """low, medium, high, critical"""
    by_side: tuple[int, int, int] = (0, 0, 0)
    """A, B, N"""
    severity_sum: float = 0.0
    severity_max: float = 0.0


@dataclass
class InstrumentState:
    symbol: str
    fstate: np.ndarray | None = None
    """Window ring and per-trade bookkeeping (``models.kernel``); None until the first trade."""
    istate: np.ndarray | None = None
    calib: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """The last ensemble scores; empty until the first models serve."""
    training: np.ndarray | None = None
    """The last ``train_size`` training samples, oldest first."""
    models: ServingModels | None = None
    pending: list[PendingRefit] = field(default_factory=list)
    """The next generations, oldest first, being fitted in the background."""
    samples_seen: int = 0
    anomalies: int = 0
    rejected: int = 0
    last_price: float = math.nan
    last_timestamp_ns: int = 0
    since_ns: int = 0
    """Event time of the first trade of this state (a new one after an idle day)."""
    guard: TradeGuard = field(default_factory=TradeGuard)
    tracker: IncidentTracker | None = None
    """None until the first trade; replaced, never changed, once committed."""
    tally: Tally = field(default_factory=Tally)

    @property
    def generation(self) -> int:
        return 0 if self.models is None else self.models.generation

    def __getstate__(self) -> dict:
        raise TypeError("pickle DetectionEngine.snapshot(state), not the state (it holds refits in flight)")


@dataclass(frozen=True)
class InstrumentSnapshot:
    """An instrument's state at one moment: picklable, immutable, no refit results awaited.

    Refits in flight are kept as their jobs (training rows, fit number, warm-start
    envelope) and started again by ``DetectionEngine.restore``.
    """

    symbol: str
    fstate: np.ndarray | None
    istate: np.ndarray | None
    calib: np.ndarray
    training: np.ndarray | None
    models: ServingModels | None
    pending: tuple[RefitJob, ...]
    samples_seen: int
    anomalies: int
    rejected: int
    last_price: float
    last_timestamp_ns: int
    since_ns: int
    guard: GuardMemory
    tracker: IncidentTracker | None
    tally: Tally
    training_columns: tuple[str, ...] = ()
    """The inputs the models and training rows hold, in order (empty in snapshots from before it
    was kept): a snapshot of other inputs cannot be continued, even with as many of them."""
    settings: tuple[str, tuple[tuple[str, str], ...]] | None = None
    """A digest of the settings that change results, and those off their defaults as (variable,
    value) (``models.engine.result_settings``; None in snapshots from before it was kept): a state
    saved under other settings is not continued under these."""

    def __reduce__(self):
        """Pickled as one zlib-compressed blob (level 1): a recovery store holds a snapshot of
        every instrument, and the window rings, timestamps and tracker compress to about half
        (1,000 market instruments: 31.2 MB pickled, 17.2 MB compressed, 0.4 ms per instrument)."""
        values = tuple(getattr(self, part.name) for part in fields(self))
        return _unpacked_snapshot, (zlib.compress(pickle.dumps(values, protocol=5), 1),)


def _unpacked_snapshot(blob: bytes) -> InstrumentSnapshot:
    return InstrumentSnapshot(*pickle.loads(zlib.decompress(blob)))


def window_lengths(window_size: int) -> tuple[int, int]:
    """The lengths of an instrument's ``fstate`` and ``istate`` (``models.kernel``'s layout)."""
    ring = ring_length(window_size)
    return fstate_length(ring), I_HEADER + 2 * ring


def new_window(window_size: int) -> tuple[np.ndarray, np.ndarray]:
    f_length, i_length = window_lengths(window_size)
    fstate = np.zeros(f_length)
    fstate[F_TAIL_WEIGHT] = fstate[F_MOVE_WEIGHT] = fstate[F_SWING_WEIGHT] = 1.0
    return fstate, np.zeros(i_length, np.int64)


def frozen(array: np.ndarray | None) -> np.ndarray | None:
    """Mark an array read-only: committed state is replaced, never written."""
    if array is not None:
        array.flags.writeable = False
    return array
