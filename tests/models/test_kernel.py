"""The compiled kernel against the numpy reference and scikit-learn: same numbers, same votes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import IsolationForest

from connectors.codec import format_timestamp_ns
from models import kernel, reference
from models.config import DetectorConfig
from models.detectors.flat_trees import FlatForest
from models.detectors.isolation_forest import _ScoredTree, flatten
from models.engine import DetectionEngine
from models.features import AFTER_LARGE_TRADES, LARGE_VS_TAIL, SINCE_LARGE_CAP
from models.records import AnomalyRecord
from models.state import InstrumentState
from models.kernel import CALIBRATED, ENSEMBLE, N_QUANTITIES, QUANTITY, SCORES, VOTES, ZSCORES

ISO = "2025-05-09T14:00:00.{:09d}Z"


def flat_forest(forest: IsolationForest, max_samples: int = 256) -> FlatForest:
    trees = [flatten(_ScoredTree(tree, features)) for tree, features in zip(forest.estimators_, forest.estimators_features_)]
    return FlatForest.empty().add(trees, len(trees), max_samples)


def kernel_forest_scores(X: np.ndarray, flat: FlatForest) -> np.ndarray:
    """``2 ** (-mean path length / c(n))`` from the kernel's path totals, on the float32 rows scikit-learn
    scores (plus the +inf column the leaves split on), as ``score_run`` feeds them."""
    X32 = np.hstack([X.astype(np.float32), np.full((len(X), 1), np.inf, np.float32)])
    totals = np.zeros(len(X))
    kernel.forest_totals(X32, flat.offsets, flat.nodes, flat.depth, totals)
    return 2.0 ** (-(totals / (len(flat.offsets) - 1)) / flat.normaliser)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flat_forest_scores_equal_scikit_learn_score_samples(seed):
    rng = np.random.default_rng(seed)
    train = rng.standard_normal((500, 4)) * [1, 5, 0.01, 300]
    test = np.vstack([rng.standard_normal((300, 4)) * [1, 5, 0.01, 300], train[:50], [[40, -90, 3, 1e6]]])
    forest = IsolationForest(n_estimators=30, max_samples=256, random_state=seed).fit(train)
    flat = flat_forest(forest)
    expected = -forest.score_samples(test)
    np.testing.assert_allclose(kernel_forest_scores(test, flat), expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(reference.forest_scores(test, flat.offsets, flat.nodes, flat.normaliser), expected, rtol=1e-12, atol=0)


def test_rolling_flat_forest_keeps_the_newest_trees():
    rng = np.random.default_rng(5)
    forests = [IsolationForest(n_estimators=5, random_state=s).fit(rng.standard_normal((300, 3))) for s in range(5)]
    rolled = FlatForest.empty()
    for forest in forests:
        rolled = rolled.add([flatten(_ScoredTree(t, f)) for t, f in zip(forest.estimators_, forest.estimators_features_)], 10, 256)
    newest = FlatForest.empty().add(
        [flatten(_ScoredTree(t, f)) for forest in forests[3:] for t, f in zip(forest.estimators_, forest.estimators_features_)],
        10, 256,
    )
    assert rolled.trees == 10
    for name in ("offsets", "nodes"):
        np.testing.assert_array_equal(getattr(rolled, name), getattr(newest, name))


@pytest.mark.parametrize("n", [1, 7, 8, 9, 99, 100, 128, 129, 300, 1031])
def test_window_sums_are_numpys_pairwise_sums(n):
    values = np.random.default_rng(n).standard_normal(n) * 0.05 + 117.3
    assert kernel._pairwise(values, 0, n) == values.sum()


def every_output(engine: DetectionEngine, state: InstrumentState, trades: list[dict], batch: int) -> np.ndarray:
    """Every trade's kernel output row, the trades fed to ``engine`` in batches of ``batch``."""
    captured = []
    score_run = engine._score_run

    def capture(*args):
        count = score_run(*args)
        captured.append(args[-2].copy())
        return count

    engine._score_run = capture
    for start in range(0, len(trades), batch):
        engine.process(state, trades[start:start + batch])
    return np.vstack(captured)


def compare_every_run(engine: DetectionEngine) -> list[tuple[np.ndarray, np.ndarray, int, int]]:
    """Make ``engine`` score every run with both implementations from the same state; collect both."""
    runs = []
    compiled = engine._score_run

    def both(*args):
        args = list(args)
        copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        ref_count = reference.score_run(*copies)
        count = compiled(*args)
        out, ref_out = args[-2], copies[-2]
        runs.append((out.copy(), ref_out.copy(), count, ref_count))
        # the state after the run: window ring and bookkeeping exactly, the calibration ring's scores closely
        np.testing.assert_array_equal(args[5], copies[5])
        np.testing.assert_array_equal(args[6], copies[6])
        np.testing.assert_allclose(args[7], copies[7], rtol=1e-12)
        return count

    engine._score_run = both
    return runs


@pytest.mark.parametrize("fixture", ["opening_trades", "sweep_trades"])
def test_compiled_and_reference_agree_on_real_slices(fixture, request, small_config):
    trades = request.getfixturevalue(fixture)
    engine = DetectionEngine(dataclasses.replace(
        small_config, model_features=small_config.model_features + ("deviation_bps", "distinct_stamps_50ms"),
    ))
    runs = compare_every_run(engine)
    state = engine.new_state("NVDA")
    for start in range(0, len(trades), 333):
        engine.process(state, trades[start:start + 333])
    scored = 0
    for out, ref_out, count, ref_count in runs:
        np.testing.assert_array_equal(out[:, :18], ref_out[:, :18])  # the features: bit for bit
        np.testing.assert_allclose(out[:, 18:N_QUANTITIES], ref_out[:, 18:N_QUANTITIES], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(out[:, SCORES:VOTES], ref_out[:, SCORES:VOTES], rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(out[:, VOTES:VOTES + 3], ref_out[:, VOTES:VOTES + 3])
        np.testing.assert_allclose(out[:, ENSEMBLE:], ref_out[:, ENSEMBLE:], rtol=1e-9, atol=1e-12)
        assert count == ref_count
        scored += int(np.isfinite(out[:, SCORES]).sum())
    assert scored > len(trades) // 2
    assert sum(np.nansum(out[:, VOTES:VOTES + 3]) for out, *_ in runs) > 10  # the votes compared are not all "no"


def test_reference_engine_gives_the_compiled_engines_records(opening_trades, small_config):
    def records(config):
        engine = DetectionEngine(config)
        state = engine.new_state("NVDA")
        return [r.to_dict() for r in engine.process(state, opening_trades) if isinstance(r, AnomalyRecord)]

    compiled, slow = records(small_config), records(dataclasses.replace(small_config, compiled=False))
    assert [r["anomaly_id"] for r in compiled] == [r["anomaly_id"] for r in slow]
    assert [r["level"] for r in compiled] == [r["level"] for r in slow]
    for mine, theirs in zip(compiled, slow):
        assert mine["features"] == theirs["features"]
        assert mine["anomaly_score"] == pytest.approx(theirs["anomaly_score"], rel=1e-9)


def trade(sequence: int, nanos: int, price: float, size: int, side: str = "B") -> dict:
    return {
        "ts_recv": ISO.format(nanos + 1000), "ts_event": ISO.format(nanos), "rtype": 0, "publisher_id": 2,
        "instrument_id": 1, "action": "T", "side": side, "depth": 0, "price": price, "size": size, "flags": 0,
        "ts_in_delta": 0, "sequence": sequence, "symbol": "X",
    }


@pytest.mark.parametrize("compiled", [True, False])
def test_per_trade_inputs_on_a_crafted_tape(compiled):
    # 30 trades 1 ms apart at 100.00 (sizes 100, 200, ... repeating), then a sweep: four prints at one
    # nanosecond walking 100.05 -> 100.20, then a 5,000-share print 30 ms later.
    tape = [trade(i, i * 1_000_000, 100.0, 100 * (1 + i % 3)) for i in range(30)]
    sweep_at = 30 * 1_000_000
    tape += [trade(30 + j, sweep_at, 100.05 + 0.05 * j, 10) for j in range(4)]
    tape += [trade(34, sweep_at + 30_000_000, 100.0, 5_000)]
    engine = DetectionEngine(DetectorConfig(compiled=compiled, background_training=False))
    out = every_output(engine, engine.new_state("X"), tape, len(tape))
    inputs = {name: out[:, QUANTITY[name]] for name in ("deviation_bps", "instant_move_bps", "distinct_stamps_50ms",
                                                        "size_vs_median", "size_vs_max")}
    assert inputs["deviation_bps"][0] == 0.0 and inputs["size_vs_median"][0] == 1.0  # nothing before the first trade
    assert inputs["size_vs_median"][1] == 2.0  # 200 / median(100)
    assert inputs["size_vs_median"][3] == 0.5  # 100 / median(100, 200, 300)
    assert inputs["size_vs_median"][4] == pytest.approx(200 / 150)  # median of 100, 200, 300, 100

    # every print of the sweep is measured against 100.00, the price before its timestamp
    np.testing.assert_allclose(inputs["instant_move_bps"][30:34], [5.0, 10.0, 15.0, 20.0], rtol=1e-9)
    assert inputs["instant_move_bps"][29] == 0.0  # same price as the trade 1 ms earlier
    # the median of the previous 20 prices is still 100.00 during the sweep
    np.testing.assert_allclose(inputs["deviation_bps"][30:34], [5.0, 10.0, 15.0, 20.0], rtol=1e-9)
    # within 50 ms up to the trade, itself included
    assert inputs["distinct_stamps_50ms"][25] == 26  # the ticks at 0..25 ms
    assert inputs["distinct_stamps_50ms"][33] == 31  # the ticks at 0..29 ms and the sweep's one stamp
    assert inputs["distinct_stamps_50ms"][34] == 22  # ticks at 10..29 ms (10 ms: exactly 50 ms before), sweep
    sizes = [t["size"] for t in tape[:34]]
    assert inputs["size_vs_median"][34] == pytest.approx(5_000 / np.median(sizes))
    assert inputs["size_vs_max"][0] == 1.0 and inputs["size_vs_max"][1] == 2.0  # 200 / max(100)
    assert inputs["size_vs_max"][3] == pytest.approx(100 / 300)
    assert inputs["size_vs_max"][30] == pytest.approx(10 / 300)
    assert inputs["size_vs_max"][34] == pytest.approx(5_000 / 300)  # the largest of the 34 before is 300


@pytest.mark.parametrize("recent, score, expected", [
    ([], 3.0, 1.0),
    ([0.1, 0.2, 0.3], 5.0, 1.0),  # beats all: -log10(1/4) / log10(4)
    ([0.1, 0.2, 0.3], 0.05, 0.0),  # beaten by all
    ([0.1, 0.2, 0.3], 0.2, np.log10(4 / 3) / np.log10(4)),  # ties count as at least as high
])
def test_calibrated_score(recent, score, expected):
    ring = np.array(recent + [9.9] * 5)  # entries past the fill are ignored
    assert kernel.calibrated(ring, len(recent), score) == pytest.approx(expected, abs=1e-15)
    assert reference.calibrated_score(np.array(recent), score) == pytest.approx(expected, abs=1e-15)


def test_calibrated_score_agrees_on_random_rings():
    rng = np.random.default_rng(0)
    for _ in range(200):
        recent = rng.exponential(1.0, int(rng.integers(1, 1000)))
        score = float(rng.exponential(2.0))
        assert kernel.calibrated(recent, len(recent), score) == pytest.approx(reference.calibrated_score(recent, score), rel=1e-12)


def test_unscored_trades_have_no_scores(opening_trades):
    engine = DetectionEngine(DetectorConfig(background_training=False))
    captured = []
    score_run = engine._score_run
    engine._score_run = lambda *args: captured.append(args[-2]) or score_run(*args)
    engine.process(engine.new_state("NVDA"), opening_trades[:600])
    out = np.vstack(captured)
    assert np.isfinite(out[:, :N_QUANTITIES]).all()
    assert np.isnan(out[:, SCORES:]).all()
    assert np.isnan(out[:, ZSCORES]).all() and np.isnan(out[:, CALIBRATED]).all()


def _independent_percentiles(values: np.ndarray, share: float) -> np.ndarray:
    """The value above which ``share`` of the earlier values lie, before each trade (0 before any),
    from scratch: every earlier value weighed (1 - 1/N) ** age."""
    edges = 2.0 ** (np.arange(kernel.TAIL_BINS + 1) / kernel.TAIL_BINS_PER_OCTAVE)
    bins = np.clip(np.digitize(values, edges) - 1, 0, kernel.TAIL_BINS - 1)
    percentiles = np.zeros(len(values))
    for i in range(1, len(values)):
        weights = (1.0 - 1.0 / kernel.TAIL_TRADES) ** np.arange(i - 1, -1, -1)
        masses = np.bincount(bins[:i], weights=weights, minlength=kernel.TAIL_BINS)
        above = np.concatenate([np.cumsum(masses[::-1])[::-1][1:], [0.0]])  # mass in the bins above each
        target = share * masses.sum()
        b = np.flatnonzero((masses > 0) & (above + masses >= target)).max()
        percentiles[i] = edges[b + 1] - (target - above[b]) / masses[b] * (edges[b + 1] - edges[b])
    return percentiles


def _outputs_on(trades: list[dict], compiled: bool) -> np.ndarray:
    """Every trade's kernel output row, a fresh NVDA instrument fed in batches of 700."""
    engine = DetectionEngine(DetectorConfig(compiled=compiled, background_training=False))
    return every_output(engine, engine.new_state("NVDA"), trades, 700)


def _independent_tail_ratios(values: np.ndarray, share: float = kernel.TAIL_SHARE) -> np.ndarray:
    """size_vs_tail (or instant_move_vs_tail) from scratch; 1 for the first trade."""
    ratios = values / np.maximum(1.0, _independent_percentiles(values, share))
    ratios[0] = 1.0
    return ratios


@pytest.mark.parametrize("compiled", [True, False])
def test_tail_inputs_against_an_independent_computation_on_real_trades(opening_trades, compiled):
    trades = opening_trades[:3_000]
    out = _outputs_on(trades, compiled)
    got = out[:, QUANTITY["size_vs_tail"]]
    expected = _independent_tail_ratios(np.array([float(t["size"]) for t in trades]))
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert got.max() > 5.0  # the slice has prints far above its recent 99.9th percentile
    moves = np.abs(out[:, QUANTITY["instant_move_bps"]])
    got = out[:, QUANTITY["instant_move_vs_tail"]]
    np.testing.assert_allclose(got, _independent_tail_ratios(moves, kernel.MOVE_TAIL_SHARE), rtol=1e-9)
    assert got.max() > 1.0 and (moves > 0).sum() > 100  # moves within a timestamp happen, some beyond the tail


def test_size_tail_rescaling_keeps_the_percentile():
    def tail_after(sizes, scale=1.0):
        fstate = np.zeros(kernel.fstate_length(kernel.ring_length(100)))
        masses = fstate[-kernel.TAIL_BINS:]
        fstate[kernel.F_TAIL_WEIGHT] = 1.0
        for size in sizes[:-1]:
            kernel.tail_add(masses, fstate, kernel.F_TAIL_WEIGHT, float(size))
        # the same distribution with every weight multiplied: the next trade reaches the rescaling point
        masses *= scale
        fstate[kernel.F_TAIL_TOTAL] *= scale
        fstate[kernel.F_TAIL_WEIGHT] *= scale
        kernel.tail_add(masses, fstate, kernel.F_TAIL_WEIGHT, float(sizes[-1]))
        return kernel.tail_size(masses, fstate[kernel.F_TAIL_TOTAL], kernel.TAIL_SHARE), fstate[kernel.F_TAIL_WEIGHT]

    sizes = np.random.default_rng(3).integers(1, 5_000, 2_000)
    plain, _ = tail_after(sizes)
    weight = (1.0 / (1.0 - 1.0 / kernel.TAIL_TRADES)) ** (len(sizes) - 1)
    rescaled, weight_after = tail_after(sizes, kernel.TAIL_RESCALE_AT / weight)
    assert weight_after == 1.0
    assert rescaled == pytest.approx(plain, rel=1e-9)
    assert 4_000 < plain < 5_800  # in the bin of the largest sizes drawn (up to 5,000)


def _with_burst(trades: list[dict], after: int, prints: int, first_trade_at_ns: int,
                spacing_ns: int = 100_000) -> tuple[list[dict], set[int]]:
    """Real trades, moved in time so the first is at ``first_trade_at_ns``, with a two-sided burst of
    ``prints`` small prints ``spacing_ns`` apart at the first pause after trade ``after`` that holds it;
    renumbered. Returns the tape and the burst's sequences."""
    stamps = np.array([int(pd.Timestamp(t["ts_event"]).value) for t in trades], np.int64)
    stamps += first_trade_at_ns - stamps[0]
    span = prints * spacing_ns
    at = after + int(np.flatnonzero(np.diff(stamps[after:]) > span + 1_000_000)[0])
    price = float(trades[at]["price"])
    tape = []
    for position, (row, stamp) in enumerate(zip(trades, stamps)):
        tape.append(dict(row, ts_event=format_timestamp_ns(int(stamp)), ts_recv=format_timestamp_ns(int(stamp) + 500)))
        if position == at:
            tape += [dict(row, ts_event=format_timestamp_ns(int(stamp) + spacing_ns * (k + 1)),
                          ts_recv=format_timestamp_ns(int(stamp) + spacing_ns * (k + 1) + 500), side="AB"[k % 2],
                          price=round(price + 0.01 * (k % 3 - 1), 2), size=10 + 7 * (k % 11)) for k in range(prints)]
    for sequence, row in enumerate(tape):
        row["sequence"] = 1_000 + sequence
    return tape, set(range(1_000 + at + 1, 1_000 + at + 1 + prints))


def _records_on(tape: list[dict], sequences: set[int] | None, batch: int = 1_000, **settings) -> list[dict]:
    """The records on ``sequences`` (every record when None)."""
    engine = DetectionEngine(DetectorConfig(background_training=False, **settings))
    state = engine.new_state("NVDA")
    records = []
    for start in range(0, len(tape), batch):
        records += [r.to_dict() for r in engine.process(state, tape[start:start + batch]) if isinstance(r, AnomalyRecord)]
    return [r for r in records if sequences is None or r["sequence"] in sequences]


TEN_AM = int(pd.Timestamp("2025-05-09T10:00:00", tz="America/New_York").value)


def _burst_in_the_rush(morning_trades: list[dict]) -> tuple[list[dict], set[int]]:
    """The burst tape of 10:00, moved so the burst starts about 20 s after 09:30 New York."""
    probe, burst = _with_burst(morning_trades[:4_000], 3_000, 200, TEN_AM)
    burst_at = int(pd.Timestamp(probe[min(burst) - 1_000]["ts_event"]).value)
    opening = int(pd.Timestamp("2025-05-09T09:30:20", tz="America/New_York").value)
    return _with_burst(morning_trades[:4_000], 3_000, 200, TEN_AM - (burst_at - opening))


@pytest.mark.parametrize("compiled", [True, False])
def test_a_burst_of_distinct_timestamps_is_an_anomaly_on_the_zscore_vote_alone(morning_trades, compiled):
    tape, burst = _with_burst(morning_trades[:4_000], 3_000, 200, TEN_AM)
    alone = _records_on(tape, burst, compiled=compiled)
    without = _records_on(tape, burst, compiled=compiled, burst_alone_stamps=0)
    single = [r for r in alone if r["votes"] == 1]
    assert single and all(r["detectors"]["zscore"]["vote"] for r in single)
    assert all(r["inputs"]["distinct_stamps_50ms"] >= 90 for r in single)
    assert all(r["votes"] >= 2 for r in without)
    # the rule only adds: what two detectors flag is flagged either way
    assert {r["sequence"] for r in without} == {r["sequence"] for r in alone if r["votes"] >= 2}


def _distinct_within(stamps: np.ndarray, window: int, span_ns: int) -> np.ndarray:
    """distinct_stamps from scratch: distinct values among each trade's last ``window`` stamps
    (itself included) that are no more than ``span_ns`` before its own."""
    return np.array([len({t for t in stamps[max(0, i - window + 1):i + 1] if stamps[i] - span_ns <= t <= stamps[i]})
                     for i in range(len(stamps))])


@pytest.mark.parametrize("compiled", [True, False])
def test_distinct_stamps_against_an_independent_computation_on_real_trades(morning_trades, compiled):
    # 150 prints 320 us apart (48 ms) after real trades of 10:00 New York
    tape, burst = _with_burst(morning_trades[:3_000], 2_000, 150, TEN_AM, spacing_ns=320_000)
    got = _outputs_on(tape, compiled)[:, QUANTITY["distinct_stamps_50ms"]]
    stamps = np.array([int(pd.Timestamp(t["ts_event"]).value) for t in tape], np.int64)
    np.testing.assert_array_equal(got, _distinct_within(stamps, DetectorConfig().window_size, 50_000_000))
    rows = [row - 1_000 for row in sorted(burst)]
    assert got[rows].max() >= 99  # the window's 100 trades are nearly all the burst's, each at its own stamp
    assert _distinct_within(stamps, DetectorConfig().window_size, 20_000_000)[rows].max() <= 64  # a 20 ms span sees 63


@pytest.mark.parametrize("compiled", [True, False])
def test_a_slow_burst_is_an_anomaly_on_the_zscore_vote_alone(morning_trades, compiled):
    # 160 prints in 48 ms: under 80 distinct timestamps in any 20 ms, all 100 of a window within 50 ms
    tape, burst = _with_burst(morning_trades[:4_000], 3_000, 160, TEN_AM, spacing_ns=300_000)
    alone = _records_on(tape, burst, compiled=compiled)
    without = _records_on(tape, burst, compiled=compiled, burst_alone_stamps=0)
    single = [r for r in alone if r["votes"] == 1]
    assert len(single) >= 50 and all(r["inputs"]["distinct_stamps_50ms"] >= 90 for r in single)
    assert len(without) < len(alone)


@pytest.mark.parametrize("compiled", [True, False])
def test_the_pace_of_trading_does_not_vote_in_the_opening_rush(morning_trades, compiled):
    tape, burst = _burst_in_the_rush(morning_trades)
    opening = int(pd.Timestamp("2025-05-09T09:30:20", tz="America/New_York").value)
    assert opening <= int(pd.Timestamp(tape[min(burst) - 1_000]["ts_event"]).value) < opening + 10**9
    off = _records_on(tape, burst, compiled=compiled, opening_rush_s=0)
    rush = _records_on(tape, burst, compiled=compiled)
    assert any(r["votes"] == 1 for r in off)
    assert all(r["inputs"]["distinct_stamps_50ms"] < 80 or r["detectors"]["zscore"]["score"] < 1.0 for r in rush)
    assert len(rush) < len(off)
    # nor does the two-sided intensity: on its vote alone, at a threshold the burst reaches, timestamps out of play
    by_intensity = dict(compiled=compiled, votes_required=1, zscore_intensity_threshold=5.0, zscore_stamps_limit=1e9,
                        burst_alone_stamps=0)
    off = _records_on(tape, burst, opening_rush_s=0, **by_intensity)
    rush = _records_on(tape, burst, **by_intensity)
    assert any(r["zscores"]["intensity"] >= 5 and r["detectors"]["zscore"]["vote"] for r in off)
    assert not any(r["zscores"]["intensity"] >= 5 and r["detectors"]["zscore"]["vote"] for r in rush)


def _with_off_market_prints(trades: list[dict], every: int, away: list[float]) -> tuple[list[dict], set[int]]:
    """Real trades with one print ``away`` (a fraction) from the last price after every ``every`` trades
    from the 2,000th on, 1 us after it; renumbered. Returns the tape and the prints' sequences."""
    tape, prints = [], set()
    moves = iter(away)
    for position, row in enumerate(trades):
        tape.append(dict(row))
        if position >= 2_000 and (position - 2_000) % every == 0:
            move = next(moves, None)
            if move is not None:
                stamp = int(pd.Timestamp(row["ts_event"]).value) + 1_000
                tape.append(dict(row, ts_event=format_timestamp_ns(stamp), ts_recv=format_timestamp_ns(stamp + 500),
                                 price=round(float(row["price"]) * (1 + move), 2), side="N"))
                prints.add(len(tape) - 1)
    for sequence, row in enumerate(tape):
        row["sequence"] = 1_000 + sequence
    return tape, {1_000 + position for position in prints}


@pytest.mark.parametrize("compiled", [True, False])
def test_a_print_far_off_the_market_is_an_anomaly_on_the_zscore_vote_alone(morning_trades, compiled):
    away = [0.004, -0.005, 0.006, -0.007, 0.008, -0.009, 0.01, -0.012, 0.015, -0.02]
    tape, prints = _with_off_market_prints(morning_trades[:7_500], 500, away)
    alone = _records_on(tape, prints, compiled=compiled)
    without = _records_on(tape, prints, compiled=compiled, off_market_alone_bps=0)
    assert {r["sequence"] for r in alone} == prints  # every print, whatever the forest and envelope said
    single = [r for r in alone if r["votes"] == 1]
    assert single and all(r["detectors"]["zscore"]["vote"] for r in single)
    assert all(abs(r["inputs"]["deviation_bps"]) >= 40 and r["inputs"]["instant_move_vs_tail"] >= 10 for r in single)
    assert {r["sequence"] for r in without} == {r["sequence"] for r in alone if r["votes"] >= 2} != prints


def test_the_instruments_own_instant_moves_guard_the_off_market_rule(morning_trades):
    # the same prints, judged as if the instrument's ordinary instant moves were 40 times larger
    tape, prints = _with_off_market_prints(morning_trades[:7_500], 500, [0.004, -0.005, 0.006, -0.007, 0.008])
    guarded = _records_on(tape, prints, off_market_alone_vs_tail=400)
    assert all(r["votes"] >= 2 for r in guarded)


def test_the_one_vote_rules_the_rush_and_breakouts_give_the_same_records_for_any_batch_split(morning_trades):
    burst_tape, burst = _with_burst(morning_trades[:4_000], 3_000, 200, TEN_AM)
    rush_tape, _ = _burst_in_the_rush(morning_trades)
    off_tape, off = _with_off_market_prints(morning_trades[:4_500], 500, [0.004, -0.006, 0.009, -0.012, 0.02])
    crash_tape, crash = _with_slow_crash(morning_trades[:5_500], 4_500, 0.011, 350)
    # in the rush every single vote is a record, so what the rush silences shows
    for tape, sequences, votes in ((burst_tape, burst, 2), (rush_tape, None, 1), (off_tape, off, 2),
                                   (crash_tape, crash, 2)):
        split = [[{k: v for k, v in r.items() if k != "detected_at"}
                  for r in _records_on(tape, sequences, batch, votes_required=votes)]
                 for batch in (len(tape), 1_000, 37)]
        assert split[0] and split[0] == split[1] == split[2]


def _independent_breakouts(prices: np.ndarray) -> np.ndarray:
    """breakout_bps from scratch: after every 100th trade the median of the 20 prices before it is a
    sample; a price beyond all of the last 20 samples is measured against their median."""
    breakouts = np.zeros(len(prices))
    samples: list[float] = []
    for i, price in enumerate(prices):
        recent = samples[-kernel.BREAKOUT_SAMPLES:]
        if recent and (price < min(recent) or price > max(recent)):
            breakouts[i] = 1e4 * (price / np.median(recent) - 1.0)
        if (i + 1) % kernel.BREAKOUT_EVERY == 0:
            samples.append(float(np.median(prices[max(0, i - kernel.PRICE_MEDIAN_TRADES):i])))
    return breakouts


@pytest.mark.parametrize("compiled", [True, False])
def test_breakout_against_an_independent_computation_on_real_trades(morning_trades, compiled):
    expected = _independent_breakouts(np.array([float(t["price"]) for t in morning_trades[:6_000]]))
    out = _outputs_on(morning_trades[:6_000], compiled)
    got = out[:, QUANTITY["breakout_bps"]]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    assert (got[:100] == 0).all()  # no sample before the 100th trade
    assert (got > 0).sum() > 100 and (got < 0).sum() > 100  # a real morning breaks out both ways
    assert np.abs(got).max() < 80  # and never as far as the vote's limit
    swings = np.abs(out[:, QUANTITY["momentum_bps"]])
    np.testing.assert_allclose(out[:, QUANTITY["breakout_vs_swing"]],
                               np.abs(expected) / np.maximum(1.0, _independent_percentiles(swings, kernel.SWING_SHARE)),
                               rtol=1e-9)


def _with_slow_crash(trades: list[dict], start: int, depth: float, leg: int) -> tuple[list[dict], set[int]]:
    """Real trades whose prices from ``start`` walk ``depth`` down over ``leg`` trades and back over
    ``leg`` more (sizes and times as they were). Returns the tape and the crash's sequences."""
    tape = [dict(t) for t in trades]
    for step in range(2 * leg):
        share = (step + 1) / leg if step < leg else (2 * leg - step - 1) / leg
        row = tape[start + step]
        row["price"] = round(float(row["price"]) * (1.0 - depth * share), 2)
    return tape, {int(tape[start + step]["sequence"]) for step in range(2 * leg)}


@pytest.mark.parametrize("compiled", [True, False])
def test_a_slow_crash_votes_on_its_breakout(morning_trades, compiled):
    # 1.1% down over 350 trades and back over 350: 31 bp per window of 100 on the way down
    tape, crash = _with_slow_crash(morning_trades[:6_000], 4_500, 0.011, 350)
    found = _records_on(tape, crash, compiled=compiled)
    without = _records_on(tape, crash, compiled=compiled, zscore_breakout_limit=1e9)
    guarded = _records_on(tape, crash, compiled=compiled, zscore_breakout_swing_limit=40)
    broke = [r for r in found if abs(r["inputs"]["breakout_bps"]) >= 80]
    assert broke and all(r["detectors"]["zscore"]["vote"] and r["inputs"]["breakout_bps"] < 0 for r in broke)
    # 23-33 times the median window move (2.5 bp) before the crash: far beyond the guard of 8
    assert all(20 <= r["inputs"]["breakout_vs_swing"] <= 40 for r in broke)
    assert len(found) >= 100 and len(without) <= 5  # 136 and 1: the window's momentum sees a fraction of it
    assert len(guarded) <= 5  # as if the instrument's windows moved 5 times as much


def _independent_trades_since_large(size_vs_tail: np.ndarray) -> np.ndarray:
    """trades_since_large from scratch: since the last earlier print of at least LARGE_VS_TAIL times
    the tail, capped."""
    since = np.full(len(size_vs_tail), float(SINCE_LARGE_CAP))
    last = None
    for i, ratio in enumerate(size_vs_tail):
        if last is not None:
            since[i] = min(i - last, SINCE_LARGE_CAP)
        if ratio >= LARGE_VS_TAIL:
            last = i
    return since


@pytest.mark.parametrize("compiled", [True, False])
def test_trades_since_large_against_an_independent_computation_on_real_trades(morning_trades, compiled):
    trades = morning_trades[9_000:14_500]  # from 10:16 New York: a cluster of large prints
    out = _outputs_on(trades, compiled)
    ratios = _independent_tail_ratios(np.array([float(t["size"]) for t in trades]))
    got = out[:, QUANTITY["trades_since_large"]]
    np.testing.assert_array_equal(got, _independent_trades_since_large(ratios))
    large = np.flatnonzero(ratios >= LARGE_VS_TAIL)
    # the second trade (against a tail of one trade), then 10 times the tail, then four within 330 trades
    np.testing.assert_array_equal(large, [1, 2_033, 4_139, 4_277, 4_278, 4_464])
    np.testing.assert_array_equal(got[large], [SINCE_LARGE_CAP, 2_032, 2_106, 138, 1, 186])
    assert got[0] == SINCE_LARGE_CAP and got[-1] == len(trades) - 1 - 4_464


def _with_size(trades: list[dict], at: int, size: int) -> list[dict]:
    tape = [dict(t) for t in trades]
    tape[at]["size"] = size
    return tape


@pytest.mark.parametrize("compiled", [True, False])
def test_a_block_soon_after_a_large_print_meets_the_higher_size_limit(morning_trades, compiled):
    trades, block, earlier = morning_trades[:6_000], 5_500, 5_000
    plain = _outputs_on(trades, compiled)
    # a large print 500 trades before the block: 4 times the tail of its moment
    tail = trades[earlier]["size"] / plain[earlier, QUANTITY["size_vs_tail"]]
    tape = _with_size(trades, earlier, int(np.ceil(4 * tail)))
    tail = tape[block]["size"] / _outputs_on(tape, compiled)[block, QUANTITY["size_vs_tail"]]
    lone, after = (_outputs_on(_with_size(t, block, int(np.ceil(5.5 * tail))), compiled) for t in (trades, tape))
    assert after[block, QUANTITY["trades_since_large"]] == 500
    assert 5.5 <= after[block, QUANTITY["size_vs_tail"]] < 5.6 and after[block, VOTES + 2] == 0.0
    assert lone[block, QUANTITY["trades_since_large"]] > AFTER_LARGE_TRADES
    assert lone[block, QUANTITY["size_vs_tail"]] >= 5.5 and lone[block, VOTES + 2] == 1.0
    engine = DetectionEngine(DetectorConfig(compiled=compiled, background_training=False,
                                            zscore_size_tail_after_large=1.0))
    off = every_output(engine, engine.new_state("NVDA"), _with_size(tape, block, int(np.ceil(5.5 * tail))), 700)
    assert off[block, VOTES + 2] == 1.0  # the limit not raised: the size votes again
