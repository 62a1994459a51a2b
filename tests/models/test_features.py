"""The 18 features against an independent pandas computation on real trades."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.features import FEATURE_NAMES, MIN_DURATION_SECONDS, RollingWindow
from models.trades import validate_trades


def features_of(trades: list[dict], batch_sizes: list[int] | None = None, window: int = 100) -> np.ndarray:
    valid, rejections = validate_trades(trades)
    assert not rejections
    rolling = RollingWindow(window)
    rows, start = [], 0
    for size in batch_sizes or [len(valid)]:
        part = slice(start, start + size)
        rows.append(rolling.extend(valid.prices[part], valid.sizes[part], valid.timestamps_ns[part], valid.sides[part]))
        start += size
    return np.vstack(rows)


def pandas_features(trades: list[dict], window: int = 100) -> pd.DataFrame:
    """The definitions of the README table, written with pandas rolling windows."""
    frame = pd.DataFrame(trades)
    price, size = frame["price"].astype(float), frame["size"].astype(float)
    ts = pd.to_datetime(frame["ts_event"], format="ISO8601", utc=True).astype("int64") // 1  # ns
    roll = lambda series: series.rolling(window, min_periods=1)  # noqa: E731
    count = roll(price).count()
    first_index = (np.arange(len(frame)) - count + 1).astype(int)
    duration = np.maximum(ts.to_numpy() - ts.to_numpy()[first_index], 0) / 1e9
    out = pd.DataFrame({
        "current_price": price,
        "current_size": size,
        "price_mean": roll(price).mean(),
        "price_std": roll(price).std(ddof=0),
        "price_min": roll(price).min(),
        "price_max": roll(price).max(),
        "volume_mean": roll(size).mean(),
        "volume_std": roll(size).std(ddof=0),
        "volume_total": roll(size).sum(),
        "trade_count": count,
        "trades_per_second": (count - 1) / np.maximum(duration, MIN_DURATION_SECONDS),
        "avg_time_between_trades": np.where(count > 1, duration / np.maximum(count - 1, 1), 0.0),
        "ask_ratio": roll((frame["side"] == "A").astype(float)).mean(),
        "bid_ratio": roll((frame["side"] == "B").astype(float)).mean(),
    })
    out["price_range"] = out["price_max"] - out["price_min"]
    out["price_volatility"] = out["price_std"] / out["price_mean"]
    out["price_momentum"] = (price - price.to_numpy()[first_index]) / price.to_numpy()[first_index]
    first_size = size.to_numpy()[first_index]
    out["volume_momentum"] = (size - first_size) / np.maximum(first_size, 1.0)
    return out[list(FEATURE_NAMES)]


@pytest.mark.parametrize("fixture", ["opening_trades", "sweep_trades"])
def test_features_match_pandas(fixture, request):
    trades = request.getfixturevalue(fixture)
    ours = features_of(trades)
    theirs = pandas_features(trades).to_numpy()
    assert ours.shape == (len(trades), 18)
    # pandas rolling variance is an online update: on runs of equal prices it leaves
    # residues around 1e-7 where the direct two-pass formula gives exactly 0.
    np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-6)


def test_every_feature_is_finite_on_real_trades(opening_trades, sweep_trades):
    for trades in (opening_trades, sweep_trades):
        assert np.isfinite(features_of(trades)).all()


def test_zero_duration_windows_keep_trades_per_second_finite(sweep_trades):
    features = features_of(sweep_trades)
    tps = features[:, FEATURE_NAMES.index("trades_per_second")]
    # Hundreds of prints share 13:36:50.929943126: windows of 100 trades lasting 0 ns.
    zero = features[:, FEATURE_NAMES.index("avg_time_between_trades")] == 0.0
    assert zero.sum() > 100
    assert np.isfinite(tps).all()
    assert tps[zero & (features[:, FEATURE_NAMES.index("trade_count")] == 100)].max() == pytest.approx(99 / MIN_DURATION_SECONDS)


def test_first_trade_and_constant_prices():
    trades = [
        {"ts_recv": 10**18 + i, "ts_event": 10**18 + i * 1_000_000, "rtype": 0, "publisher_id": 2,
         "instrument_id": 1, "action": "T", "side": "N", "depth": 0, "price": 50.0, "size": 10,
         "flags": 0, "ts_in_delta": 0, "sequence": i, "symbol": "X"}
        for i in range(150)
    ]
    features = features_of(trades)
    first = dict(zip(FEATURE_NAMES, features[0]))
    assert first["trade_count"] == 1 and first["trades_per_second"] == 0 and first["price_std"] == 0
    assert first["price_volatility"] == 0 and first["price_momentum"] == 0
    last = dict(zip(FEATURE_NAMES, features[-1]))
    assert last["trade_count"] == 100 and last["price_range"] == 0
    assert last["trades_per_second"] == pytest.approx(1000.0)  # 99 gaps of 1 ms
    assert np.isfinite(features).all()


@pytest.mark.parametrize("batch_sizes", [[1] * 300, [7, 93, 1, 199], [250, 50]])
def test_features_do_not_depend_on_batch_boundaries(opening_trades, batch_sizes):
    trades = opening_trades[:300]
    np.testing.assert_array_equal(features_of(trades, batch_sizes), features_of(trades))
