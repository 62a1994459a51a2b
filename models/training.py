"""Retraining: what one retrain produces, and running it beside the scoring.

A retrain at sample ``k`` fits on the samples up to ``k``, and its models serve a
fixed number of retrain intervals later (``models.engine.REFIT_LAG``): while the
current models score the next runs of trades, the new ones are fitted in a
background process (the second core) and are installed at their retrain point,
waiting for them if they are late. Which model
scores which trade is therefore fixed by the sample count alone, never by timing, so
the results are the same with or without the background process.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from threading import Event, Lock, Thread

import numpy as np
import sklearn

from models.config import DetectorConfig
from models.detectors import EllipticEnvelopeVote, ZScoreVote
from models.detectors.elliptic_envelope import EnvelopeModel
from models.detectors.flat_trees import FlatTree
from models.detectors.isolation_forest import IsolationForestVote
from models.detectors.zscore import LEARNED_COLUMNS
from models.features import scale_floors


def training_columns(config: DetectorConfig) -> tuple[str, ...]:
    """The inputs a retrain needs, each once: the model inputs, then the z-scores' columns.

    Only these are kept as training samples (6 columns by default, not the 18 features).
    """
    names = list(config.model_features)
    names += [name for name in LEARNED_COLUMNS if name not in names]
    return tuple(names)


@dataclass(frozen=True)
class RefitJob:
    """What one refit needs: kept by a snapshot instead of the refit's result.

    ``rows`` are the training samples (``training_columns``, oldest first), ``warm``
    the envelope serving when the refit started (None before the first generation).
    """

    rows: np.ndarray
    fit_number: int
    warm: EnvelopeModel | None


@dataclass(frozen=True)
class Refit:
    """The models of one generation, fitted on one training set, in compact form."""

    trees: list[FlatTree]
    envelope: EnvelopeModel
    zscore_center: np.ndarray
    zscore_scale: np.ndarray


def refit(job: RefitJob, config: DetectorConfig) -> Refit:
    """Fit generation ``job.fit_number`` on ``job.rows``.

    Pure: every random choice is seeded from the config seed and the fit number, and
    the warm start is read from the compact envelope, never changed in place.
    """
    columns = training_columns(config)
    rows = np.ascontiguousarray(job.rows)
    # Row-major copies, as the features were before: numpy's reductions add in an order
    # that depends on the memory layout, and the fits must not depend on it.
    inputs = np.ascontiguousarray(rows[:, [columns.index(name) for name in config.model_features]])
    trees = forest_from_config(config).grow_flat(inputs, job.fit_number)
    # The inputs are finite by construction: skip scikit-learn's per-call validation.
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        envelope = envelope_from_config(config).resume(job.warm).fit(inputs)
    learned = np.ascontiguousarray(rows[:, [columns.index(name) for name in LEARNED_COLUMNS]])
    zscore = zscore_from_config(config).fit_columns(learned)
    return Refit(
        trees=trees,
        envelope=envelope.compact(),
        zscore_center=zscore.center_,
        zscore_scale=zscore.scale_,
    )


def zscore_from_config(config: DetectorConfig) -> ZScoreVote:
    return ZScoreVote(
        config.zscore_price_threshold, config.zscore_volume_threshold,
        config.zscore_volatility_threshold, config.zscore_intensity_threshold,
        config.zscore_momentum_threshold, config.zscore_size_tail_limit, config.zscore_stamps_limit,
        config.zscore_instant_move_limit, config.zscore_instant_move_tail_limit, config.zscore_breakout_limit,
        config.zscore_breakout_swing_limit,
        config.zscore_size_tail_limit_after_large,
    )


def forest_from_config(config: DetectorConfig) -> IsolationForestVote:
    return IsolationForestVote(
        config.forest_trees, config.trees_per_retrain, config.forest_max_samples,
        config.forest_threshold, config.seed,
    )


def envelope_from_config(config: DetectorConfig) -> EllipticEnvelopeVote:
    return EllipticEnvelopeVote(
        config.envelope_threshold, config.envelope_cold_every,
        scale_floor=scale_floors(config.model_features), seed=config.seed,
    )


class PendingRefit:
    """A refit under way in the background, or already done; ``job`` restarts it after a restore."""

    def __init__(self, job: RefitJob, config: DetectorConfig, future: Future | None, result: Refit | None) -> None:
        self.job, self._config, self._future, self._result = job, config, future, result

    def result(self) -> Refit:
        if self._result is None:
            try:
                self._result = self._future.result()
            except BrokenProcessPool:
                # The helper process died (killed, out of memory): fit here instead;
                # the function is pure, so the result is the same.
                _reset_pool()
                self._result = refit(self.job, self._config)
            self._future = None
        return self._result

    @property
    def in_background(self) -> bool:
        return self._future is not None

    def __getstate__(self) -> dict:
        raise TypeError("a refit in flight is not pickled: snapshot its job (models.engine.DetectionEngine.snapshot)")


def start_refit(job: RefitJob, config: DetectorConfig) -> PendingRefit:
    """Start fitting a generation; in the background when the config asks for it."""
    if not config.background_training or not _helper_ready(config.fit_helpers):
        # Until the helper process has started (about 1.5 s of imports) fitting here
        # beats waiting for it; the function is pure, so the models are the same.
        return PendingRefit(job, config, None, refit(job, config))
    try:
        return PendingRefit(job, config, _pool(config.fit_helpers).submit(refit, job, config), None)
    except (BrokenProcessPool, RuntimeError):
        _reset_pool()
        return PendingRefit(job, config, None, refit(job, config))


_POOL: ProcessPoolExecutor | None = None
_POOL_READY = Event()
_POOL_LOCK = Lock()


def _pool(helpers: int = 1) -> ProcessPoolExecutor:
    """The helper processes of this process (its worker threads share them), started on first use."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            # spawn, not fork: the parent runs Bytewax's Rust threads.
            _POOL = ProcessPoolExecutor(
                helpers, mp_context=multiprocessing.get_context("spawn"), initializer=_helper_started,
                initargs=(os.getpid(),),
            )
            _POOL_READY.clear()
            _POOL.submit(_importing).add_done_callback(lambda _: _POOL_READY.set())
            atexit.register(_reset_pool)
        return _POOL


def start_helper(helpers: int = 1) -> None:
    """Start the helper processes now rather than at the first retrain.

    The job calls this from its main thread at start, where it controls which signals the
    helpers inherit (they would otherwise start on a worker thread mid-run).
    """
    _pool(helpers)


def _helper_ready(helpers: int = 1) -> bool:
    """Start the helper if needed; whether it can take work now."""
    _pool(helpers)
    return _POOL_READY.is_set()


def _importing() -> None:
    """The helper's first job: load what refits need, so the first real one is quick."""
    import sklearn.covariance  # noqa: F401

    from models.detectors.isolation_growth import grow_trees

    grow_trees(np.arange(4.0).reshape(2, 2), 1, 2, 0)  # loads the compiled grower from numba's cache


def _helper_started(job: int) -> None:
    # The helper has one core to itself; BLAS threads would only fight the scorer.
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    Thread(target=_exit_with_parent, args=(job,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """End the helper when the job is gone, even after a kill -9 that left no time to stop it.

    ``parent`` is the job's pid as the job gave it, not the helper's parent once it has started: a
    job that ended in the second a helper takes to start had already left it to init, which the
    helper then watched for ever."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def shutdown_helper(wait: bool = True) -> None:
    """Stop the helper process (it is started again when needed).

    ``wait=False`` drops queued work: for a helper that died, or at exit.
    """
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.shutdown(wait=wait, cancel_futures=not wait)
            _POOL = None
            _POOL_READY.clear()


def _reset_pool() -> None:
    shutdown_helper(wait=False)
