"""The cold-start detector: a fresh instrument is scored by the shared model until its own serve."""

from __future__ import annotations

import numpy as np
import pytest

from models.config import ConfigError, DetectorConfig
from models.detectors.cold_start import ColdStartVote
from models.engine import DetectionEngine
from models.incidents import IncidentUpdate
from models.records import AnomalyRecord

ISO = "2025-05-09T{:02d}:{:02d}:{:02d}.{:09d}Z"
QUIET = DetectorConfig(background_training=False)


def tape(count: int, seed: int = 0) -> list[dict]:
    """An illiquid symbol: a cent-tick walk around 20.00, round-lot sizes of 100-900, a trade every ~40 s."""
    rng = np.random.default_rng(seed)
    price, trades = 20.0, []
    for i in range(count):
        price = round(max(1.0, price + 0.01 * rng.integers(-1, 2)), 2)
        seconds = 14 * 3600 + 40 * i
        stamp = ISO.format(seconds // 3600, seconds // 60 % 60, seconds % 60, int(rng.integers(0, 10**9)))
        trades.append({
            "ts_recv": stamp, "ts_event": stamp, "rtype": 0, "publisher_id": 2, "instrument_id": 7, "action": "T",
            "side": "AB"[i % 2], "depth": 0, "price": price, "size": 100 * int(rng.integers(1, 10)), "flags": 0,
            "ts_in_delta": 0, "sequence": 1000 + i, "symbol": "ILLQ",
        })
    return trades


def records(config: DetectorConfig, trades: list[dict], batch: int | None = None) -> list[AnomalyRecord]:
    engine = DetectionEngine(config)
    state = engine.new_state("ILLQ")
    out = []
    for start in range(0, len(trades), batch or len(trades)):
        out += [o for o in engine.process(state, trades[start:start + (batch or len(trades))])
                if isinstance(o, AnomalyRecord)]
    return out


def with_events(trades: list[dict]) -> list[dict]:
    """A print 5% above the market at trade 60 and a block of 50x the largest at trade 120 (1-based)."""
    trades = [dict(t) for t in trades]
    trades[59]["price"] = round(trades[58]["price"] * 1.05, 2)
    trades[119]["size"] = 50 * 900
    return trades


def test_a_fresh_instrument_reports_obvious_events_on_the_print():
    found = records(QUIET, with_events(tape(400)))
    assert [(r.trade["sequence"], r.model) for r in found] == [(1059, "shared"), (1119, "shared")]
    off_market, block = found
    assert off_market.to_dict()["detectors"] == {
        "cold_start_price": {"score": pytest.approx(off_market.inputs["deviation_bps"]), "threshold": 200.0, "vote": True},
        "cold_start_size": {"score": off_market.inputs["size_vs_max"], "threshold": 30.0, "vote": False},
    }
    assert off_market.inputs["deviation_bps"] == pytest.approx(500, abs=10)
    assert block.detector_votes == [False, True] and block.inputs["size_vs_max"] == pytest.approx(50.0)
    tail = block.inputs["size_vs_tail"]  # the recent 99.9th percentile is higher than the last 100's largest
    assert [item["text"] for item in block.explanation[:2]] == [
        f"size 45,000 = {tail:.0f}x the instrument's recent 99.9th-percentile size",
        "size 45,000 = 50x the largest of the previous 100 trades"]
    assert 30 < tail < 50
    assert off_market.explanation[0]["text"].endswith("above the recent median price")
    for record in found:
        assert record.model_generation == 0 and record.confidence == 0.5
        assert 0.5 <= record.anomaly_score <= 1.0 and record.level in ("medium", "high")


def test_the_shared_model_opens_incidents_as_the_instrument_models_do():
    engine = DetectionEngine(QUIET)
    outcomes = engine.process(engine.new_state("ILLQ"), with_events(tape(400)))
    opened = [o for o in outcomes if isinstance(o, IncidentUpdate) and o.status == "open"]
    assert len(opened) == 2


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_the_same_records_whatever_the_batches(batch):
    trades = with_events(tape(400))
    whole = [r.anomaly_id for r in records(QUIET, trades)]
    assert [r.anomaly_id for r in records(QUIET, trades, batch)] == whole == [
        "ILLQ-20250509-2-7-1059", "ILLQ-20250509-2-7-1119"]


def test_nothing_before_the_first_scored_trade():
    trades = tape(100)
    trades[19]["price"] = round(trades[18]["price"] * 1.05, 2)  # trade 20, before trade 30
    assert records(QUIET, trades) == []
    assert [r.trade["sequence"] for r in records(DetectorConfig(background_training=False, cold_start_from=10),
                                                 trades)] == [1019]


def test_off_when_asked():
    assert records(DetectorConfig(background_training=False, cold_start_from=0), with_events(tape(400))) == []


def test_the_instrument_models_take_over_once_they_serve():
    config = DetectorConfig(background_training=False, retrain_every=50, train_size=50, forest_trees=10)
    trades = tape(600)
    for at in (99, 299, 499):  # one before the models serve (trade 151), two after
        trades[at]["price"] = round(trades[at - 1]["price"] * 1.05, 2)
    found = records(config, trades)
    assert [r.trade["sequence"] for r in found if r.model == "shared"] == [1099]
    assert all(r.model == "instrument" for r in found if r.trade["sequence"] > 1150)


def test_quiet_real_trades_raise_nothing(opening_trades):
    # The pre-market of 2025-05-09: the first 1,500 trades are scored by the shared model alone.
    found = records(QUIET, opening_trades[:1500])
    assert found == []


@pytest.mark.parametrize("setting, value", [
    ("cold_start_from", 1), ("cold_start_from", -3), ("cold_start_price_bps", 0.0), ("cold_start_size_vs_max", 1.0),
])
def test_bad_settings_name_the_variable(setting, value):
    with pytest.raises(ConfigError, match=setting.upper()):
        DetectorConfig(**{setting: value})


def test_scores_and_votes_are_apart():
    detector = ColdStartVote(from_trade=5, price_bps=100.0, size_vs_max=10.0)
    scores = detector.score(np.array([-150.0, 50.0, 20.0]), np.array([1.0, 12.0, 2.0]))
    np.testing.assert_array_equal(scores, [[150.0, 1.0], [50.0, 12.0], [20.0, 2.0]])
    votes = detector.vote(scores, np.array([4, 5, 6]))
    np.testing.assert_array_equal(votes, [[False, False], [False, True], [False, False]])


@pytest.mark.parametrize("first_position", [1, 3, 5, 8, 40])
def test_flagged_rows_are_the_rows_that_vote(first_position):
    detector = ColdStartVote(from_trade=5, price_bps=100.0, size_vs_max=10.0)
    deviation = np.array([-150.0, 50.0, np.nan, 100.0, -99.9, 20.0, 300.0])
    size_vs_max = np.array([1.0, 12.0, 40.0, np.nan, 10.0, 2.0, np.inf])
    positions = first_position + np.arange(len(deviation))
    expected = np.flatnonzero(detector.vote(detector.score(deviation, size_vs_max), positions).any(axis=1))
    assert detector.flagged(deviation, size_vs_max, first_position).tolist() == expected.tolist()
    assert len(expected) == {1: 2, 3: 4, 5: 6, 8: 6, 40: 6}[first_position]
