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
import copy
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
from models.detectors.isolation_forest import IsolationForestVote, _ScoredTree
from models.features import model_inputs


@dataclass
class Refit:
    """The models of one generation, fitted on one training set."""

    trees: list[_ScoredTree]
    envelope: EllipticEnvelopeVote
    zscore: ZScoreVote
    feature_center: np.ndarray
    feature_scale: np.ndarray


def refit(
    rows: np.ndarray, config: DetectorConfig, fit_number: int, envelope: EllipticEnvelopeVote,
) -> Refit:
    """Fit generation ``fit_number`` on ``rows`` (18 features each, oldest first).

    Pure: the serving envelope is copied, not refitted in place, and every random
    choice is seeded from the config seed and ``fit_number``.
    """
    inputs = model_inputs(rows, config.model_features)
    # The inputs are finite by construction; skipping scikit-learn's per-call
    # validation halves the cost of growing a handful of small trees.
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        trees = forest_from_config(config).grow(inputs, fit_number)
        envelope = copy.deepcopy(envelope).fit(inputs)
    return Refit(
        trees=trees,
        envelope=envelope,
        zscore=zscore_from_config(config).fit(rows),
        feature_center=rows.mean(axis=0),
        # Floored at a thousandth of the feature's size: a feature that sat still over
        # the training samples (price_min in a calm spell) should not explain at z = 150.
        feature_scale=np.maximum(rows.std(axis=0), np.maximum(1e-3 * np.abs(rows.mean(axis=0)), 1e-9)),
    )


def zscore_from_config(config: DetectorConfig) -> ZScoreVote:
    return ZScoreVote(
        config.zscore_price_threshold, config.zscore_volume_threshold,
        config.zscore_volatility_threshold, config.zscore_intensity_threshold,
        config.zscore_momentum_threshold,
    )


def forest_from_config(config: DetectorConfig) -> IsolationForestVote:
    return IsolationForestVote(
        config.forest_trees, config.trees_per_retrain, config.forest_max_samples,
        config.forest_threshold, config.seed,
    )


class PendingRefit:
    """A refit under way in the background, or already done."""

    def __init__(self, future: Future | None, result: Refit | None, job: tuple) -> None:
        self._future, self._result, self._job = future, result, job

    def result(self) -> Refit:
        if self._result is None:
            try:
                self._result = self._future.result()
            except BrokenProcessPool:
                # The helper process died (killed, out of memory): fit here instead;
                # the function is pure, so the result is the same.
                _reset_pool()
                self._result = refit(*self._job)
            self._future = None
        return self._result

    def __getstate__(self) -> dict:
        # A snapshot holds the finished models, never a handle to another process.
        return {"result": self.result()}

    def __setstate__(self, state: dict) -> None:
        self._future, self._result, self._job = None, state["result"], ()


def start_refit(
    rows: np.ndarray, config: DetectorConfig, fit_number: int, envelope: EllipticEnvelopeVote,
) -> PendingRefit:
    """Start fitting a generation; in the background when the config asks for it."""
    job = (rows, config, fit_number, envelope)
    if not config.background_training or not _helper_ready():
        # Until the helper process has started (about 1.5 s of imports) fitting here
        # beats waiting for it; the function is pure, so the models are the same.
        return PendingRefit(None, refit(*job), job)
    try:
        return PendingRefit(_pool().submit(refit, *job), None, job)
    except (BrokenProcessPool, RuntimeError):
        _reset_pool()
        return PendingRefit(None, refit(*job), job)


_POOL: ProcessPoolExecutor | None = None
_POOL_READY = Event()
_POOL_LOCK = Lock()


def _pool() -> ProcessPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            # spawn, not fork: the parent runs Bytewax's Rust threads.
            _POOL = ProcessPoolExecutor(
                1, mp_context=multiprocessing.get_context("spawn"), initializer=_helper_started
            )
            _POOL_READY.clear()
            _POOL.submit(_importing).add_done_callback(lambda _: _POOL_READY.set())
            atexit.register(_reset_pool)
        return _POOL


def _helper_ready() -> bool:
    """Start the helper if needed; whether it can take work now."""
    _pool()
    return _POOL_READY.is_set()


def _importing() -> None:
    """The helper's first job: load what refits need, so the first real one is quick."""
    import sklearn.covariance  # noqa: F401
    import sklearn.ensemble  # noqa: F401


def _helper_started() -> None:
    # The helper has one core to itself; BLAS threads would only fight the scorer.
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """End the helper when the job is gone, even after a kill -9 that left no time to stop it."""
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
