"""Engine settings: one frozen dataclass, readable from ``DETECTOR_*`` variables."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from models.features import DERIVED_INPUTS, FEATURE_NAMES, MODEL_FEATURES, HISTORY_INPUTS
from models.session import EARLY_CLOSE_DAYS, LONGEST_SPAN_S, parse_days

ENV_PREFIX = "DETECTOR_"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
"""How every boolean variable of every entry point is written."""


class ConfigError(ValueError):
    """A setting has a bad value; the message names the setting."""


@dataclass(frozen=True)
class DetectorConfig:
    """Everything that decides which trades are anomalies.

    Two runs with equal configs on the same trade sequence give the same anomalies.
    """

    window_size: int = 100
    """Trades in the rolling window the 18 features are computed over."""
    retrain_every: int = 500
    """Samples between retrains; the first models are fitted after this many."""
    train_size: int = 500
    """Most recent samples each retrain fits on."""
    model_features: tuple[str, ...] = MODEL_FEATURES
    """Inputs of IsolationForest and EllipticEnvelope (see ``models.features``)."""
    forest_trees: int = 100
    """Trees in the serving IsolationForest."""
    trees_per_retrain: int = 5
    """Trees refitted at each retrain; the oldest as many are dropped."""
    forest_max_samples: int = 256
    """Samples each isolation tree is grown on (scikit-learn's ``max_samples``)."""
    forest_threshold: float = 0.58
    """IsolationForest votes when its anomaly score (0..1) is at least this."""
    envelope_threshold: float = 4000.0
    """EllipticEnvelope votes when the robust squared Mahalanobis distance is at least this."""
    envelope_cold_every: int = 50
    """Every this many retrains the robust covariance is refitted from scratch
    (FastMCD); in between it is warm-started from the previous estimate."""
    zscore_price_threshold: float = 6.0
    zscore_volume_threshold: float = 8.0
    zscore_volatility_threshold: float = 25.0
    zscore_intensity_threshold: float = 10.0
    zscore_momentum_threshold: float = 8.0
    zscore_size_tail_limit: float = 5.0
    """The z-score detector votes on a size this many times the instrument's recent 99.9th percentile."""
    zscore_stamps_limit: float = 80.0
    """...on this many distinct event times within 50 ms (a two-sided burst)."""
    zscore_instant_move_limit: float = 20.0
    """...on a price move this large (bp) within one timestamp (a sweep)..."""
    zscore_instant_move_tail_limit: float = 3.0
    """...that is also this many times the instrument's recent 95th percentile of such moves."""
    zscore_breakout_limit: float = 80.0
    """...on a price this far (bp) beyond where it was over the last ~2,000 trades (``breakout_bps``)..."""
    zscore_breakout_swing_limit: float = 8.0
    """...when ``breakout_vs_swing`` is also at least this (the instrument's own window moves)."""
    zscore_size_tail_after_large: float = 1.2
    """Within 2,000 trades of a print of 3 times the recent 99.9th percentile (``trades_since_large``:
    large prints come in clusters) the size limit is this many times higher (6 for 5); 1 turns this off."""
    votes_required: int = 2
    """Detectors (of 3) that must vote for a trade to be an anomaly."""
    burst_alone_stamps: float = 90.0
    """A trade whose window holds this many distinct event times within 50 ms is an anomaly
    on the z-score detector's vote alone (a two-sided burst the forest and the envelope
    cannot see); 0 turns this off."""
    off_market_alone_bps: float = 40.0
    """A trade this far (bp) from the median of the previous 20 prices (0 turns this off)..."""
    off_market_alone_vs_tail: float = 10.0
    """...and this many times the instrument's recent 95th percentile of instant moves is an
    anomaly on the z-score detector's vote alone (an off-market print the forest's saturated
    score can miss); 0 drops this guard."""
    opening_rush_s: float = 60.0
    """For this many seconds after 09:30 New York the distinct timestamps and the two-sided
    intensity do not vote: the first trades after the opening cross are a two-sided rush by
    nature; 0 turns this off."""
    background_training: bool = True
    """Fit the next models in a helper process while the current ones score; the
    results are identical either way (see ``models.training``)."""
    fit_helpers: int = 1
    """Helper processes fitting models in the background, shared by the worker threads of
    one job process. One keeps up with one worker (a refit every 500 trades of an
    instrument, about 3 ms each; every 50th, with a cold robust covariance, 25-40 ms);
    give ``-w N`` about N on a machine with the cores."""
    seed: int = 7
    """Seeds every random choice; the same seed gives the same scores."""
    compiled: bool = True
    """Score with the compiled kernel (``models.kernel``); false runs the numpy reference
    (``models.reference``, same results, many times slower: for checking only)."""
    idle_s: float = 86_400.0
    """A trade this long (event time) after its instrument's last one starts the instrument
    afresh, and the job drops the state of an instrument idle this long (one day)."""
    max_lateness_s: float = 60.0
    """A trade further behind its instrument's clock is refused (out of order)."""
    max_clock_jump_s: float = 604_800.0
    """A trade further ahead of its instrument's clock (a week) is refused unless the next confirms it."""
    remembered_trades: int = 512
    """Trades per instrument whose identity is kept to refuse repeats."""
    cold_start_from: int = 30
    """An instrument without its own models is scored by the shared cold-start detector
    (``models.detectors.cold_start``) from this trade on; 0 turns it off."""
    cold_start_price_bps: float = 200.0
    """The cold-start detector votes on a price this far (bp) from the median of the previous 20."""
    cold_start_size_vs_max: float = 30.0
    """The cold-start detector votes on a size this many times the largest of the previous 100."""
    early_close_days: tuple[str, ...] = EARLY_CLOSE_DAYS
    """Days (New York, ``YYYY-MM-DD``) whose closing cross is at 13:00: its print is an auction."""

    def __post_init__(self) -> None:
        _require(0 <= self.seed <= 2**31 - 1, "seed",
                 "must be between 0 and 2147483647 (scikit-learn takes seed + fit number below 2**32)")
        _require(self.window_size >= 2, "window_size", "must be at least 2")
        _require(self.retrain_every >= 10, "retrain_every", "must be at least 10")
        _require(self.train_size >= 20, "train_size", "must be at least 20")
        _require(len(self.model_features) >= 2, "model_features", "needs at least 2 features")
        unknown = [name for name in self.model_features if name not in KNOWN_MODEL_INPUTS]
        _require(not unknown, "model_features", f"unknown feature(s) {unknown}")
        _require(self.forest_trees >= 1, "forest_trees", "must be at least 1")
        _require(
            1 <= self.trees_per_retrain <= self.forest_trees,
            "trees_per_retrain", "must be between 1 and forest_trees",
        )
        # A tree of n samples has at most 2n - 1 nodes, and a node record's child index is 16 bits.
        _require(2 <= self.forest_max_samples <= 16_384, "forest_max_samples", "must be between 2 and 16384")
        _require(0.0 < self.forest_threshold < 1.0, "forest_threshold", "must be in (0, 1)")
        _require(self.envelope_threshold > 0, "envelope_threshold", "must be positive")
        _require(self.envelope_cold_every >= 1, "envelope_cold_every", "must be at least 1")
        for name in ("zscore_price_threshold", "zscore_volume_threshold", "zscore_volatility_threshold", "zscore_intensity_threshold",
                     "zscore_momentum_threshold", "zscore_size_tail_limit", "zscore_stamps_limit",
                     "zscore_instant_move_limit", "zscore_instant_move_tail_limit", "zscore_breakout_limit",
                     "zscore_breakout_swing_limit"):
            _require(getattr(self, name) > 0, name, "must be positive")
        _require(self.zscore_size_tail_after_large >= 1, "zscore_size_tail_after_large", "must be at least 1 (off)")
        _require(1 <= self.votes_required <= 3, "votes_required", "must be 1, 2 or 3")
        _require(self.burst_alone_stamps >= 0, "burst_alone_stamps", "must be 0 (off) or positive")
        _require(0 <= self.opening_rush_s <= 3600, "opening_rush_s", "must be between 0 (off) and 3600")
        for name in ("off_market_alone_bps", "off_market_alone_vs_tail"):
            _require(getattr(self, name) >= 0, name, "must be 0 (off) or positive")
        _require(1 <= self.fit_helpers <= 64, "fit_helpers", "must be between 1 and 64")
        require_span("idle_s", self.idle_s)
        require_span("max_clock_jump_s", self.max_clock_jump_s)
        require_span("max_lateness_s", self.max_lateness_s, zero_allowed=True)
        _require(self.max_clock_jump_s >= self.idle_s, "max_clock_jump_s",
                 f"({self.max_clock_jump_s:g}) must be at least {ENV_PREFIX}IDLE_S ({self.idle_s:g}): raise the "
                 "first or lower the second")
        _require(self.remembered_trades >= 1, "remembered_trades", "must be at least 1")
        _require(self.cold_start_from == 0 or self.cold_start_from >= 2, "cold_start_from", "must be 0 (off) or at least 2")
        _require(self.cold_start_price_bps > 0, "cold_start_price_bps", "must be positive")
        _require(self.cold_start_size_vs_max > 1, "cold_start_size_vs_max", "must be more than 1")
        try:
            parse_days(self.early_close_days)
        except ValueError as error:
            raise ConfigError(f"EARLY_CLOSE_DAYS: {error}") from None

    @property
    def zscore_size_tail_limit_after_large(self) -> float:
        """The size limit within 2,000 trades of a large print (the engine's and the refit's z-score voter)."""
        return self.zscore_size_tail_limit * self.zscore_size_tail_after_large

    @classmethod
    def variables(cls) -> frozenset[str]:
        """The environment variables ``from_env`` reads."""
        return frozenset(ENV_PREFIX + field.name.upper() for field in fields(cls))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DetectorConfig:
        """Build from ``DETECTOR_<SETTING>`` variables; unset ones keep their default."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            variable = ENV_PREFIX + field.name.upper()
            if variable in environ:
                values[field.name] = _parse(variable, environ[variable], getattr(cls, field.name))
        try:
            return cls(**values)
        except ConfigError as error:
            raise ConfigError(f"{ENV_PREFIX}{error}") from None


KNOWN_MODEL_INPUTS = frozenset(FEATURE_NAMES) | frozenset(DERIVED_INPUTS) | frozenset(HISTORY_INPUTS)


def parse_number(text: str, kind: type) -> int | float:
    """``int`` or ``float`` of an environment value, for every entry point: ASCII only (``int()``
    and ``float()`` would read other scripts' digits) and finite; ``ValueError`` otherwise."""
    text = text.strip()
    if not text.isascii():
        raise ValueError(text)
    value = kind(text)
    if kind is float and not math.isfinite(value):
        raise ValueError(text)
    return value


def _require(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{name.upper()}: {message}")


def require_span(name: str, seconds: float, *, zero_allowed: bool = False) -> None:
    """A span of event time, in seconds: positive (or 0 when allowed) and at most ``LONGEST_SPAN_S``,
    whose nanoseconds every use can add to a timestamp (1e300 once passed and overflowed later)."""
    if zero_allowed:
        _require(0 <= seconds <= LONGEST_SPAN_S, name, f"must be between 0 and {LONGEST_SPAN_S} seconds (100 years)")
    else:
        _require(0 < seconds <= LONGEST_SPAN_S, name,
                 f"must be positive and at most {LONGEST_SPAN_S} seconds (100 years)")


def _parse(variable: str, text: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if text.strip().lower() not in TRUE_WORDS + FALSE_WORDS:
                raise ValueError(text)
            return text.strip().lower() in TRUE_WORDS
        if isinstance(default, int):
            return parse_number(text, int)
        if isinstance(default, float):
            return parse_number(text, float)
        if isinstance(default, tuple):
            return tuple(part.strip() for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(
            f"{variable}={text!r} is not a valid {type(default).__name__}"
        ) from None
    return text
