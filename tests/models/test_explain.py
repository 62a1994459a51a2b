"""Explanations in plain units, for anomaly records and incidents."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from models.explain import NORMAL, explain_incident, explain_record, plain_count, plain_duration
from models.features import FEATURE_NAMES, RollingWindow
from models.kinds import measure

Z_WORDS = re.compile(r"\bz\b|zscore|sigma", re.IGNORECASE)


def window_features(prices, sizes, spacing_ns=10_000_000, sides=None):
    """The 18 features of the last trade of a tape, as the engine computes them."""
    count = len(prices)
    stamps = np.arange(count, dtype=np.int64) * spacing_ns if np.isscalar(spacing_ns) else spacing_ns
    sides = np.asarray(sides if sides is not None else [1, 2] * (count // 2) + [1] * (count % 2), dtype=np.int8)
    rows = RollingWindow(100).extend(np.asarray(prices, float), np.asarray(sizes, float), stamps, sides)
    return rows[-1].tolist()


@pytest.fixture
def block_features():
    sizes = [100.0] * 99 + [49_987.0]
    return window_features([117.30 + 0.01 * (i % 2) for i in range(100)], sizes)


def test_a_block_is_explained_by_its_size_against_the_others_first(block_features):
    items = explain_record(block_features)
    assert items[0]["input"] == "size_vs_mean"
    assert items[0]["value"] == pytest.approx(499.87)
    assert items[0]["text"] == "size 49,987 = 500x the mean size of the other 99 trades of the window"
    assert len(items) == 3
    assert all(set(item) == {"input", "value", "text"} for item in items)


def test_with_the_engines_inputs_the_median_and_the_recent_price_are_used(block_features):
    inputs = {"size_vs_median": 96.1, "deviation_bps": -210.0, "instant_move_bps": 3.0,
              "distinct_stamps_50ms": 412}
    items = explain_record(block_features, inputs, limit=10)
    by_input = {item["input"]: item for item in items}
    assert by_input["size_vs_median"]["text"] == "size 49,987 = 96x the median of the last 100 trades"
    assert by_input["deviation_bps"]["text"] == "price 2.1% below the recent median price"
    assert by_input["distinct_stamps_50ms"]["text"] == "412 distinct timestamps within 50 ms"
    assert by_input["instant_move_bps"]["text"] == "price moved +3.0 bp within one timestamp"
    assert "size_vs_mean" not in by_input and "price_vs_mean_bps" not in by_input
    assert [item["input"] for item in items[:3]] == ["deviation_bps", "distinct_stamps_50ms", "size_vs_median"]


@pytest.mark.parametrize("since, text", [
    (None, "size 49,987 = 12x the instrument's recent 99.9th-percentile size"),
    (10_000, "size 49,987 = 12x the instrument's recent 99.9th-percentile size"),
    (2_001, "size 49,987 = 12x the instrument's recent 99.9th-percentile size"),
    (138, "size 49,987 = 12x the instrument's recent 99.9th-percentile size, 138 trades after another large print"),
])
def test_a_block_in_a_cluster_of_large_prints_says_so(block_features, since, text):
    inputs = {"size_vs_tail": 12.0} | ({} if since is None else {"trades_since_large": since})
    by_input = {item["input"]: item for item in explain_record(block_features, inputs, limit=10)}
    assert by_input["size_vs_tail"]["text"] == text


@pytest.mark.parametrize("breakout, text", [
    (-112.0, "price 1.1% below where it traded over the last ~2,000 trades, beyond all of it"),
    (95.0, "price 0.95% above where it traded over the last ~2,000 trades, beyond all of it"),
    (0.0, None),  # within the range of the samples: nothing to say
])
def test_a_breakout_is_said_against_where_the_price_traded(block_features, breakout, text):
    items = explain_record(block_features, {"breakout_bps": breakout}, limit=10)
    by_input = {item["input"]: item["text"] for item in items}
    assert by_input.get("breakout_bps") == text


def test_items_are_ranked_by_how_far_beyond_normal_they_are(block_features):
    items = explain_record(block_features, limit=10)
    telling = [abs(item["value"]) / NORMAL[item["input"]] for item in items]
    assert telling == sorted(telling, reverse=True)


def test_a_price_far_from_the_window_is_explained_in_percent():
    prices = [100.0] * 99 + [102.0]
    items = explain_record(window_features(prices, [100.0] * 100))
    texts = [item["text"] for item in items]
    assert items[0]["input"] in ("price_vs_mean_bps", "momentum_bps")
    assert "price 2.0% above the window mean" in texts
    assert "price +2.0% over the last 100 trades" in texts


def test_a_two_sided_burst_is_explained_as_prints_in_milliseconds():
    features = window_features([100.0] * 100, [20.0] * 100, spacing_ns=40_000)
    items = explain_record(features)
    assert items[0]["input"] == "two_sided_rate"
    assert items[0]["text"] == "100 prints in 4.0 ms, 50% buyer / 50% seller initiated"


def test_no_explanation_speaks_in_z_scores(block_features):
    features = window_features([100.0] * 100, [20.0] * 100, spacing_ns=np.zeros(100, dtype=np.int64))
    for f in (block_features, features):
        for item in explain_record(f, {"size_vs_median": 5.0}, limit=10):
            assert not Z_WORDS.search(item["text"]), item["text"]
            assert math.isfinite(item["value"])


@pytest.mark.parametrize("inputs", [None, {}, {"size_vs_median": float("nan")}, {"deviation_bps": "x"},
                                    {"distinct_stamps_50ms": None}, {"size_vs_median": True}])
def test_missing_or_odd_inputs_fall_back_to_the_features(block_features, inputs):
    items = explain_record(block_features, inputs)
    assert items[0]["input"] == "size_vs_mean"


@pytest.mark.parametrize("features", [
    [], {}, [float("nan")] * 18, {"current_size": 5.0}, dict.fromkeys(FEATURE_NAMES, 0.0),
])
def test_missing_or_degenerate_features_give_what_can_be_said_and_never_raise(features):
    items = explain_record(features)
    assert all(math.isfinite(item["value"]) for item in items)


def test_features_as_a_mapping_give_the_same_as_a_sequence(block_features):
    assert explain_record(dict(zip(FEATURE_NAMES, block_features))) == explain_record(block_features)


def _flash_crash_evidence():
    rng = np.random.default_rng(0)
    base = 100 + np.cumsum(rng.normal(0, 0.002, 700))
    shape = np.concatenate([np.zeros(250), np.linspace(0, 1, 150), np.linspace(1, 0, 150), np.zeros(150)])
    prices = np.round(base * (1 - 0.024 * shape), 2)
    sizes = rng.integers(1, 300, 700).astype(float)
    stamps = np.arange(700, dtype=np.int64) * 80_000_000
    sides = rng.integers(0, 3, 700).astype(np.int8)
    return measure(prices, sizes, stamps, sides, incident_start=200 + 80)


def test_an_incident_explanation_leads_with_the_fact_that_decided_its_kind():
    evidence = _flash_crash_evidence()
    items = explain_incident(evidence, "flash_crash", anomalies=57, trades=312, duration_s=40.9)
    assert items[0]["input"] == "price_move_bps"
    assert re.fullmatch(r"price -2\.\d% from 100\.\d\d \(the market before\) to 9\d\.\d\d", items[0]["text"])
    assert {"recovered", "anomalies"} <= {item["input"] for item in items}
    anomalies = next(item for item in items if item["input"] == "anomalies")
    assert anomalies["text"] == "57 anomalies over 312 trades in 41 s"
    as_block = explain_incident(evidence, "block", anomalies=1, trades=1, duration_s=0.0)
    assert as_block[0]["input"] == "size_vs_median"
    extent = next(item for item in as_block if item["input"] == "anomalies")
    assert extent["text"] == "1 anomaly over 1 trade in the same nanosecond"


@pytest.mark.parametrize(("seconds", "text"), [
    (0.0, "the same nanosecond"), (350e-6, "350 us"), (0.0032, "3.2 ms"), (0.018, "18 ms"), (4.2, "4.2 s"),
    (40.9, "41 s"), (725.0, "12 min"),
])
def test_durations_read_as_an_analyst_says_them(seconds, text):
    assert plain_duration(seconds) == text


def test_counts_agree_with_their_noun():
    assert (plain_count(1, "trade"), plain_count(2, "trade"), plain_count(1_452, "print")) == (
        "1 trade", "2 trades", "1,452 prints")
    assert plain_count(1, "anomaly", "anomalies") == "1 anomaly"
