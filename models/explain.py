"""Explanations in plain units: what was unusual about a trade or an incident.

"size 49,987 = 96x the median of the last 100 trades" tells an analyst what happened;
"trades_per_second z 530,907" does not. Each explanation is a list of
``{"input", "value", "text"}``: the quantity, its value in its own unit (a ratio, bp,
prints, ms), and a sentence. They are ranked by how telling they are: the value against
what is normal for it (``NORMAL``, the 99.9th percentile of the quantity over the regular
session of two real NVDA days, outside any injected event), so the size of a block comes
before the trade rate it also raises.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models.features import AFTER_LARGE_TRADES, COLUMN, FEATURE_NAMES, SINCE_LARGE_CAP
from models.kinds import KindEvidence

NORMAL = {
    "size_vs_median": 90.0,       # size / median size of the previous 100 trades
    "size_vs_mean": 35.0,         # size / mean size of the other trades of the window
    "size_vs_max": 3.7,           # size / largest size of the previous 100 trades
    "size_vs_tail": 1.0,          # size / the instrument's recent 99.9th-percentile size (1.0 by definition)
    "deviation_bps": 5.0,         # |price vs the recent median|, bp
    "price_vs_mean_bps": 8.0,     # |price vs the window mean|, bp
    "instant_move_bps": 8.0,      # |price move within one timestamp|, bp
    "momentum_bps": 15.0,         # |price move over the window|, bp
    "volatility_bps": 5.0,        # price std over the window, bp of the mean
    "two_sided_rate": 10_000.0,   # prints per second x (1 - |buyer share - seller share|)
    "distinct_stamps_50ms": 60.0, # distinct timestamps within 50 ms
    "breakout_bps": 38.0,         # |price beyond the last ~2,000 trades' samples vs their median|, bp
    "burst_stamps": 45.0,         # an incident's: within 20 ms (models.kinds.KindRules.burst_window_ms)
}
"""What is normal for each quantity: its natural 99.9th percentile (NVDA, regular session,
2025-05-09 and 2024-09-23). A value at this level is as telling as 1.0."""

RECORD_ITEMS = 3
"""Items in an anomaly record's explanation."""


def explain_record(features: Sequence[float] | Mapping[str, float],
                   inputs: Mapping[str, Any] | None = None, limit: int = RECORD_ITEMS) -> list[dict[str, Any]]:
    """The ``limit`` most telling facts about one flagged trade.

    ``features`` are the 18 window features (a sequence in ``FEATURE_NAMES`` order or a
    mapping by name); ``inputs`` the engine's extra per-trade inputs when it has them
    (``size_vs_median``, ``size_vs_max``, ``size_vs_tail`` with ``trades_since_large``, ``deviation_bps``,
    ``instant_move_bps``, ``distinct_stamps_50ms``, ``breakout_bps``). Missing or non-finite values are skipped, never raised on.
    """
    f = _feature_map(features)
    extra = {name: value for name, value in ((k, _number(v)) for k, v in (inputs or {}).items())
             if value is not None}
    items: list[tuple[float, dict[str, Any]]] = []
    size, count = f.get("current_size"), f.get("trade_count")
    window = f"the last {count:,.0f} trades" if count else "the window"
    if "size_vs_median" in extra and size is not None:
        ratio = extra["size_vs_median"]
        items.append(_item("size_vs_median", ratio, f"size {size:,.0f} = {_times(ratio)} the median of {window}"))
    elif size is not None and count and count > 1 and f.get("volume_total", 0.0) > size:
        others = (f["volume_total"] - size) / (count - 1)
        ratio = size / others
        items.append(_item("size_vs_mean", ratio, f"size {size:,.0f} = {_times(ratio)} the mean size of the "
                                                  f"other {count - 1:,.0f} trades of the window"))
    if "size_vs_max" in extra and size is not None:
        ratio = extra["size_vs_max"]
        items.append(_item("size_vs_max", ratio, f"size {size:,.0f} = {_times(ratio)} the largest of the "
                                                 f"previous {_previous(count)} trades"))
    if "size_vs_tail" in extra and size is not None:
        ratio = extra["size_vs_tail"]
        since = extra.get("trades_since_large", SINCE_LARGE_CAP)
        cluster = f", {since:,.0f} trades after another large print" if since <= AFTER_LARGE_TRADES else ""
        items.append(_item("size_vs_tail", ratio, f"size {size:,.0f} = {_times(ratio)} the instrument's recent "
                                                  f"99.9th-percentile size{cluster}"))
    if "deviation_bps" in extra:
        bps = extra["deviation_bps"]
        items.append(_item("deviation_bps", bps, f"price {_percent(bps)} {_side(bps)} the recent median price"))
    elif f.get("current_price") is not None and f.get("price_mean"):
        bps = 1e4 * (f["current_price"] / f["price_mean"] - 1.0)
        items.append(_item("price_vs_mean_bps", bps, f"price {_percent(bps)} {_side(bps)} the window mean"))
    if "instant_move_bps" in extra:
        bps = extra["instant_move_bps"]
        items.append(_item("instant_move_bps", bps, f"price moved {_signed_percent(bps)} within one timestamp"))
    if f.get("price_momentum") is not None:
        bps = 1e4 * f["price_momentum"]
        items.append(_item("momentum_bps", bps, f"price {_signed_percent(bps)} over {window}"))
    if extra.get("breakout_bps"):
        bps = extra["breakout_bps"]
        items.append(_item("breakout_bps", bps, f"price {_percent(bps)} {_side(bps)} where it traded over the "
                                                "last ~2,000 trades, beyond all of it"))
    if f.get("price_volatility") is not None:
        bps = 1e4 * f["price_volatility"]
        items.append(_item("volatility_bps", bps, f"price spread (std) {bps:,.1f} bp over {window}"))
    if "distinct_stamps_50ms" in extra:
        stamps = extra["distinct_stamps_50ms"]
        items.append(_item("distinct_stamps_50ms", stamps, f"{stamps:,.0f} distinct timestamps within 50 ms"))
    rate = _two_sided_rate(f)
    if rate is not None:
        prints = count or 0
        span = (prints - 1) * f.get("avg_time_between_trades", 0.0)
        buyers, sellers = f.get("bid_ratio", 0.0), f.get("ask_ratio", 0.0)
        text = (f"{prints:,.0f} prints in {plain_duration(span)}, "
                f"{buyers:.0%} buyer / {sellers:.0%} seller initiated")
        items.append(_item("two_sided_rate", rate, text))
    return _ranked(items, limit)


KIND_EVIDENCE = {
    "off_market_print": "price_move_bps", "ramp": "price_move_bps", "flash_crash": "price_move_bps",
    "block": "size_vs_median", "auction": "size_vs_median", "burst": "burst_stamps",
}
"""The fact that decided each kind: it leads the incident's explanation."""


def explain_incident(evidence: KindEvidence, kind: str, anomalies: int, trades: int,
                     duration_s: float, earlier_block: dict[str, Any] | None = None,
                     limit: int = 4) -> list[dict[str, Any]]:
    """The incident's facts in plain units: the one that decided its kind first, then the
    others by how telling they are. ``earlier_block``: for a block, the item that compares it
    with the instrument's largest earlier block (what its severity is capped by), said right
    after the size."""
    e = evidence
    items = [
        _item("price_move_bps", e.move_bps,
              f"price {_signed_percent(e.move_bps)} from {e.reference_price:,.2f} (the market before) "
              f"to {e.extreme_price:,.2f}", normal=NORMAL["momentum_bps"]),
        _item("size_vs_median", e.size_vs_median,
              f"largest print {plain_shares(e.max_size)} = {_times(e.size_vs_median)} the median size "
              f"({e.median_size:,.0f}) before the incident"),
        _item("burst_stamps", e.burst_stamps,
              f"{plain_count(e.burst_prints, 'print')} in {plain_duration(e.burst_ms / 1e3)} "
              f"({plain_count(e.burst_stamps, 'distinct timestamp')})"),
    ]
    if e.recovered is not None and abs(e.move_bps) >= NORMAL["momentum_bps"]:
        items.append((0.5, {"input": "recovered", "value": e.recovered,
                            "text": f"{e.recovered:.0%} of the move retraced by the last trade"}))
    extent = (f"{plain_count(anomalies, 'anomaly', 'anomalies')} over {plain_count(trades, 'trade')} "
              f"in {plain_duration(duration_s)}")
    items.append((0.25, {"input": "anomalies", "value": anomalies, "text": extent}))
    lead = KIND_EVIDENCE.get(kind)
    items = [(math.inf if item["input"] == lead else telling, item) for telling, item in items]
    if earlier_block:
        items.append((math.inf, earlier_block))
    return _ranked(items, limit)


def plain_count(number: float, singular: str, plural: str | None = None) -> str:
    """``1 trade``, ``2 trades``, ``1,452 prints``."""
    word = singular if number == 1 else (plural or singular + "s")
    return f"{number:,.0f} {word}"


def plain_shares(size: float) -> str:
    return plain_count(size, "share")


def _item(name: str, value: float, text: str, normal: float | None = None) -> tuple[float, dict[str, Any]]:
    telling = abs(value) / (normal or NORMAL[name])
    return telling, {"input": name, "value": float(value), "text": text}


def _ranked(items: list[tuple[float, dict[str, Any]]], limit: int) -> list[dict[str, Any]]:
    """Most telling first; ties keep the order they were listed in."""
    order = sorted(range(len(items)), key=lambda i: -items[i][0])
    return [items[i][1] for i in order[:limit]]


def _feature_map(features: Sequence[float] | Mapping[str, float]) -> dict[str, float]:
    if isinstance(features, Mapping):
        pairs = features.items()
    else:
        pairs = zip(FEATURE_NAMES, features or ())
    out = {}
    for name, value in pairs:
        number = _number(value)
        if name in COLUMN and number is not None:
            out[name] = number
    return out


def _two_sided_rate(f: Mapping[str, float]) -> float | None:
    rate = f.get("trades_per_second")
    if rate is None:
        return None
    one_sided = abs(f.get("bid_ratio", 0.0) - f.get("ask_ratio", 0.0))
    return rate * max(1.0 - one_sided, 0.0)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _previous(count: float | None) -> str:
    """How many earlier sizes ``size_vs_max`` was taken over: up to 100, all before a full window."""
    return "100" if not count or count >= 100 else f"{count - 1:,.0f}"


def _times(ratio: float) -> str:
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:,.1f}x"


def _percent(bps: float) -> str:
    """Absolute, as % from 10 bp up, else in bp."""
    value = abs(bps)
    if value >= 10:
        return f"{value / 100:.2f}%" if value < 100 else f"{value / 100:.1f}%"
    return f"{value:.1f} bp"


def _signed_percent(bps: float) -> str:
    return ("+" if bps >= 0 else "-") + _percent(bps)


def _side(bps: float) -> str:
    return "above" if bps >= 0 else "below"


def plain_duration(seconds: float) -> str:
    """A duration as an analyst says it: 350 us, 18 ms, 4.2 s, 41 s, 12 min."""
    if seconds <= 0:
        return "the same nanosecond"
    if seconds < 1e-3:
        return f"{seconds * 1e6:,.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:,.1f} ms" if seconds < 0.01 else f"{seconds * 1e3:,.0f} ms"
    if seconds < 120:
        return f"{seconds:,.1f} s" if seconds < 10 else f"{seconds:,.0f} s"
    return f"{seconds / 60:,.0f} min"


# --- an incident's one-line summary ----------------------------------------------------


@dataclass(frozen=True)
class IncidentFacts:
    """What the one-line summary is written from."""

    symbol: str
    kind: str
    direction: str | None
    evidence: KindEvidence
    anomalies: int
    trades: int
    duration_s: float
    morning: bool = True
    """Before noon New York time: an auction is the opening cross, else the closing one."""
    against_earlier_block: str | None = None
    """For a block: how it compares with the largest block the instrument printed before it
    within a day (``0.7x the largest earlier block (37,000 shares at 13:45:21 UTC)``)."""


def summary(facts: IncidentFacts) -> str:
    """One sentence an analyst can read in the alert list, in the incident's own units."""
    e, symbol = facts.evidence, facts.symbol
    move = _move_percent(e.move_bps)
    if facts.kind == "flash_crash":
        name = "flash crash" if facts.direction == "down" else "flash spike"
        recovered = f", {e.recovered:.0%} recovered" if e.recovered is not None else ""
        return (f"{symbol} {name}: {move} over {facts.trades:,} trades in {plain_duration(facts.duration_s)}"
                f"{recovered}")
    if facts.kind == "ramp":
        when = "in one instant" if e.walk_seconds <= 0 else f"in {plain_duration(e.walk_seconds)}"
        pushers = "buyer" if facts.direction == "up" else "seller"
        return (f"{symbol} ramp: {move} {when} over {e.walk_trades:,} prints, "
                f"{e.walk_side_share:.0%} {pushers}-initiated")
    if facts.kind == "off_market_print":
        back = "" if e.recovered is None else (
            ", then back at the market" if e.recovered >= 0.8 else f", {e.recovered:.0%} back since")
        return (f"{symbol} off-market print: {plain_shares(e.extreme_size)} at {e.extreme_price:,.2f}, "
                f"{move} from the market ({e.reference_price:,.2f}){back}")
    if facts.kind == "block":
        earlier = "" if facts.against_earlier_block is None else ", " + facts.against_earlier_block
        return (f"{symbol} block: {e.max_size:,.0f} shares at {e.max_size_price:,.2f} = "
                f"{e.size_vs_median:,.0f}x the median size{earlier}")
    if facts.kind == "burst":
        return (f"{symbol} burst: {e.burst_prints:,} prints in {plain_duration(e.burst_ms / 1e3)}, "
                f"{_burst_sides(e.burst_buy_share, e.burst_sell_share)}")
    if facts.kind == "auction":
        cross = "opening" if facts.morning else "closing"
        return f"{symbol} {cross} cross: {e.max_size:,.0f} shares at {e.max_size_price:,.2f}"
    return (f"{symbol} unusual trading: {plain_count(facts.anomalies, 'anomaly', 'anomalies')} over "
            f"{plain_count(facts.trades, 'trade')} in {plain_duration(facts.duration_s)}, largest move {move}, "
            f"largest print {plain_shares(e.max_size)}")


def _move_percent(bps: float) -> str:
    """Signed, as % with two decimals under 1%, one above."""
    return f"{bps / 100:+.1f}%" if abs(bps) >= 100 else f"{bps / 100:+.2f}%"


def _burst_sides(buy: float, sell: float) -> str:
    if buy >= 0.2 and sell >= 0.2:
        return "both sides"
    if buy > sell:
        return f"{buy:.0%} buyers"
    return f"{sell:.0%} sellers"
