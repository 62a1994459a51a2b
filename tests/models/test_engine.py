"""The engine end to end: determinism, retraining, recovery, votes, rejections."""

from __future__ import annotations

import dataclasses
import pickle
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from hostile_values import trade_batches

from models.config import DetectorConfig
from models.engine import result_settings
from models.incidents import IncidentSettings
from models.engine import REFIT_LAG, DetectionEngine
from models.features import FEATURE_NAMES
from models.incidents import IncidentUpdate
from models.records import AnomalyRecord
from models.trades import Rejection


def run(config, trades, batch_sizes=None, state=None, incidents=False):
    """Records and rejections of ``trades`` cut into ``batch_sizes``; incident updates too if asked."""
    engine = DetectionEngine(config)
    state = state or engine.new_state("NVDA")
    outcomes, start = [], 0
    for size in batch_sizes or [len(trades)]:
        outcomes += engine.process(state, trades[start:start + size])
        start += size
    assert start >= len(trades)
    if not incidents:
        outcomes = [outcome for outcome in outcomes if not isinstance(outcome, IncidentUpdate)]
    return outcomes, state


def comparable(outcomes):
    """Records and incident updates without their processing time; rejections as they are."""
    out = []
    for outcome in outcomes:
        if isinstance(outcome, (AnomalyRecord, IncidentUpdate)):
            record = outcome.to_dict()
            record.pop("detected_at", None)
            record.pop("updated_at", None)
            out.append(record)
        else:
            out.append(outcome)
    return out


def random_sizes(total, seed):
    rng, sizes = random.Random(seed), []
    while sum(sizes) < total:
        sizes.append(rng.choice([1, 2, 3, 17, 64, 199, 200, 201, 450, 1000]))
    return sizes


@pytest.fixture(scope="module")
def reference(request):
    """The opening slice scored in one batch: the records every other way must equal."""
    trades = request.getfixturevalue("opening_trades")
    config = DetectorConfig(retrain_every=200, train_size=200, forest_trees=20, trees_per_retrain=5)
    outcomes, state = run(config, trades)
    return config, trades, outcomes, state


def test_reference_run_finds_anomalies(reference):
    _, trades, outcomes, state = reference
    assert 0 < len(outcomes) < len(trades) // 10
    assert state.generation == len(trades) // 200 - REFIT_LAG
    assert state.samples_seen == len(trades)


@pytest.mark.parametrize("batches", ["ones", "random-1", "random-2"])
def test_same_records_whatever_the_batch_boundaries(reference, batches):
    config, trades, outcomes, _ = reference
    sizes = [1] * len(trades) if batches == "ones" else random_sizes(len(trades), int(batches[-1]))
    again, _ = run(config, trades, sizes)
    assert comparable(again) == comparable(outcomes)


@pytest.mark.parametrize("batches", ["ones", "random-3"])
def test_same_incidents_whatever_the_batch_boundaries(reference, batches):
    config, trades, _, _ = reference
    whole, _ = run(config, trades, incidents=True)
    sizes = [1] * len(trades) if batches == "ones" else random_sizes(len(trades), 3)
    again, _ = run(config, trades, sizes, incidents=True)
    updates = [outcome for outcome in whole if isinstance(outcome, IncidentUpdate)]
    assert updates and comparable(again) == comparable(whole)
    assert {update.status for update in updates} >= {"open", "closed"}


def test_background_training_changes_nothing(reference):
    config, trades, outcomes, _ = reference
    foreground, _ = run(dataclasses.replace(config, background_training=False), trades, random_sizes(len(trades), 5))
    assert comparable(foreground) == comparable(outcomes)


@pytest.mark.parametrize("cut", [1, 777, 2000, 3333])
def test_pickled_snapshot_resumes_exactly(reference, cut):
    config, trades, outcomes, _ = reference
    engine = DetectionEngine(config)
    first, state = run(config, trades[:cut])
    restored = engine.restore(pickle.loads(pickle.dumps(engine.snapshot(state))))
    rest, _ = run(config, trades[cut:], state=restored)
    assert comparable(first + rest) == comparable(outcomes)


def test_snapshot_taken_while_refits_are_in_flight_restores_exactly(reference):
    config, trades, outcomes, _ = reference
    engine = DetectionEngine(config)
    cut = 1400  # just after the retrain point at 1,400: two refits are pending
    first, state = run(config, trades[:cut])
    assert len(state.pending) == REFIT_LAG
    snapshot = engine.snapshot(state)  # does not wait for them...
    assert [job.fit_number for job in snapshot.pending] == [6, 7]
    rest, _ = run(config, trades[cut:], state=state)  # ...and the original goes on meanwhile
    restored = engine.restore(pickle.loads(pickle.dumps(snapshot)))
    again, _ = run(config, trades[cut:], state=restored)
    assert comparable(first + again) == comparable(first + rest) == comparable(outcomes)


@pytest.mark.parametrize("change", ["shorter window arrays", "other model parameters", "other inputs, as many"])
def test_a_snapshot_of_another_state_layout_starts_the_instrument_afresh(reference, change):
    config, trades, outcomes, _ = reference
    engine = DetectionEngine(config)
    _, state = run(config, trades[:2100])
    snapshot = engine.snapshot(state)
    if change == "shorter window arrays":  # as an engine before size_vs_tail wrote them
        snapshot = dataclasses.replace(snapshot, fstate=snapshot.fstate[:-128])
    elif change == "other model parameters":
        models = dataclasses.replace(snapshot.models, params=snapshot.models.params[:-3])
        snapshot = dataclasses.replace(snapshot, models=models)
    else:  # written by an engine with log_size where this one has two_sided_intensity
        columns = tuple("log_size" if name == "two_sided_intensity" else name for name in snapshot.training_columns)
        assert columns != snapshot.training_columns
        snapshot = dataclasses.replace(snapshot, training_columns=columns)
    assert engine.cannot_continue(snapshot) == "saved by an engine with another state layout"
    restored = engine.restore(snapshot)
    assert restored.fstate is None and restored.samples_seen == 0 and restored.models is None
    assert len(restored.guard.memory.identities) == config.remembered_trades  # repeats are still refused
    again, _ = run(config, trades[2100:], state=restored)
    fresh, _ = run(config, trades[2100:])
    assert comparable(again) == comparable(fresh)  # and goes on like a new instrument


@pytest.mark.parametrize("saved_with, reason", [
    ({}, None),
    ({"forest_threshold": 0.55}, "saved under other settings (DETECTOR_FOREST_THRESHOLD changed)"),
    ({"background_training": False, "fit_helpers": 2}, None),  # how results are computed, not what they are
])
def test_a_snapshot_saved_under_other_settings_is_not_continued(reference, saved_with, reason):
    config, trades, _, _ = reference
    saving = DetectionEngine(dataclasses.replace(config, **saved_with))
    _, state = run(saving.config, trades[:2100])
    snapshot = pickle.loads(pickle.dumps(saving.snapshot(state)))
    engine = DetectionEngine(config)
    assert engine.cannot_continue(snapshot) == reason
    assert engine.cannot_continue(dataclasses.replace(snapshot, settings=None)) is None  # saved before settings were
    restored = engine.restore(snapshot)
    assert (restored.samples_seen == 0) == (reason is not None)


def test_incident_settings_count_among_the_settings_a_snapshot_keeps(reference):
    config, _, _, _ = reference
    engine = DetectionEngine(config, IncidentSettings(quiet_trades=150))
    assert ("DETECTOR_INCIDENT_QUIET_TRADES", "150") in engine.settings[1]
    assert all(not name.startswith("DETECTOR_INCIDENT_") for name, _ in DetectionEngine(config).settings[1])
    assert engine.settings[0] != DetectionEngine(config).settings[0]


def test_a_default_changed_by_an_upgrade_is_noticed_too(reference):
    """The same settings off their defaults, but a digest of other values: an earlier version's
    defaults (the digest is of every setting, so that is what it would show)."""
    config, trades, _, _ = reference
    engine = DetectionEngine(config)
    _, state = run(config, trades[:300])
    snapshot = engine.snapshot(state)
    earlier = dataclasses.replace(snapshot, settings=("0" * 16, snapshot.settings[1]))
    assert engine.cannot_continue(earlier) == "saved under other settings (defaults of this version changed)"
    everything = {name for name, _ in result_settings(DetectorConfig(), IncidentSettings())[1]}
    assert not everything  # the defaults name nothing, yet have a digest
    assert result_settings(DetectorConfig(), IncidentSettings())[0] == DetectionEngine().settings[0]


def test_a_pickled_snapshot_is_compressed_and_unpacks_whole(reference):
    config, trades, _, _ = reference
    engine = DetectionEngine(config)
    _, state = run(config, trades[:2100])
    snapshot = engine.snapshot(state)
    plain = pickle.dumps(tuple(getattr(snapshot, f.name) for f in dataclasses.fields(snapshot)))
    packed = pickle.dumps(snapshot)
    assert len(packed) < 0.8 * len(plain)
    unpacked = pickle.loads(packed)
    for f in dataclasses.fields(snapshot):
        assert pickle.dumps(getattr(unpacked, f.name)) == pickle.dumps(getattr(snapshot, f.name)), f.name


def test_snapshot_is_not_changed_by_later_batches(reference):
    config, trades, _, _ = reference
    engine = DetectionEngine(config)
    _, state = run(config, trades[:2100])
    snapshot = engine.snapshot(state)
    frozen = pickle.dumps(snapshot)
    engine.process(state, trades[2100:2600])
    assert pickle.dumps(snapshot) == frozen


def test_an_exception_inside_process_leaves_the_state_as_it_was(reference, monkeypatch):
    config, trades, outcomes, _ = reference
    engine = DetectionEngine(config)
    _, state = run(config, trades[:1900])
    before = pickle.dumps(engine.snapshot(state))
    calls = []
    real = engine._score_run

    def fails_on_the_second_run(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real(*args)

    monkeypatch.setattr(engine, "_score_run", fails_on_the_second_run)
    with pytest.raises(RuntimeError, match="boom"):
        engine.process(state, trades[1900:2300])  # crosses the retrain point at 2,000
    assert pickle.dumps(engine.snapshot(state)) == before
    monkeypatch.undo()
    rest, _ = run(config, trades[1900:], state=state)
    expected = [r for r in comparable(outcomes) if r["sequence"] >= trades[1900]["sequence"]]
    assert comparable(rest) == expected


def test_retrain_happens_at_the_exact_sample_count_inside_a_batch(opening_trades):
    config = DetectorConfig(retrain_every=100, train_size=100, forest_trees=10, trees_per_retrain=5)
    engine = DetectionEngine(config)
    state = engine.new_state("NVDA")
    engine.process(state, opening_trades[:250])  # retrain points 100 and 200 fall inside
    assert len(state.pending) == REFIT_LAG and state.generation == 0
    engine.process(state, opening_trades[250:301])  # point 300: the first generation is installed
    assert state.generation == 1 and state.models.forest.trees == 5
    assert [job.fit_number for job in engine.snapshot(state).pending] == [2, 3]
    # only the columns the fits need are kept, train_size of them
    assert state.training.shape == (100, len(engine.training_columns)) == (100, 6)


def test_no_anomaly_during_warm_up(reference):
    config, _, outcomes, _ = reference
    warm_up = (1 + REFIT_LAG) * config.retrain_every
    sequences = [record.trade["sequence"] for record in outcomes]
    first_scored = reference[1][warm_up]["sequence"]
    assert min(sequences) >= first_scored


def test_records_carry_votes_scores_and_severity(reference):
    config, _, outcomes, _ = reference
    for record in outcomes:
        data = record.to_dict()
        assert data["votes"] >= config.votes_required
        assert data["votes"] == sum(d["vote"] for d in data["detectors"].values())
        assert data["confidence"] == pytest.approx(data["votes"] / 3)
        assert data["level"] in {"low", "medium", "high", "critical"}
        assert 0 <= data["severity"] <= 1
        assert list(data["features"]) == list(FEATURE_NAMES)
        assert all(np.isfinite(list(data["features"].values())))
        assert data["anomaly_id"] == f"NVDA-20250509-2-{data['instrument_id']}-{data['sequence']}"
        assert len(data["explanation"]) == 3
        assert data["model_generation"] >= 1
        assert data["model"] == "instrument"
        assert 0 <= data["anomaly_score"] <= 1
        expected = np.mean([min(d["score"] / d["threshold"], 10) for d in data["detectors"].values()])
        assert data["ensemble_score"] == pytest.approx(expected, rel=1e-12)
        assert set(data["inputs"]) >= {"deviation_bps", "instant_move_bps", "distinct_stamps_50ms", "size_vs_median"}
        assert all(np.isfinite(list(data["inputs"].values())))


def test_the_opening_cross_is_an_auction_anomaly(reference):
    _, _, outcomes, _ = reference
    cross = [r for r in outcomes if r.trade["size"] == 1452275]
    assert len(cross) == 1 and cross[0].kind == "auction"
    first, second, third = cross[0].explanation[:3]
    tail = cross[0].inputs["size_vs_tail"]
    assert first == {"input": "size_vs_tail", "value": tail,
                     "text": f"size 1,452,275 = {tail:,.0f}x the instrument's recent 99.9th-percentile size"}
    assert 300 < tail < 1_388  # the pre-market's 99.9th percentile is above the last 100 trades' largest
    assert second == {"input": "size_vs_max", "value": pytest.approx(1452275 / 1046),
                      "text": "size 1,452,275 = 1,388x the largest of the previous 100 trades"}
    assert third == {
        "input": "size_vs_median", "value": 14522.75, "text": "size 1,452,275 = 14,523x the median of the last 100 trades"}


@pytest.mark.parametrize("required", [1, 2, 3])
def test_votes_required(reference, required):
    config, trades, _, _ = reference
    outcomes, _ = run(dataclasses.replace(config, votes_required=required), trades)
    assert all(record.votes >= required for record in outcomes)
    if required < 3:
        assert outcomes
    if required == 1:
        assert any(record.votes == 1 for record in outcomes)


def test_votes_required_nests(reference):
    config, trades, _, _ = reference
    found = {
        required: {r.anomaly_id for r in run(dataclasses.replace(config, votes_required=required), trades)[0]}
        for required in (1, 2, 3)
    }
    assert found[3] <= found[2] <= found[1]
    assert len(found[3]) < len(found[2]) < len(found[1])


def test_rejections_come_back_in_place_and_never_stop_the_engine(reference):
    config, trades, outcomes, _ = reference
    bad = {"symbol": "NVDA", "price": -1}
    mixed = trades[:1000] + [bad] + trades[1000:2500] + ["garbage"] + trades[2500:]
    again, state = run(config, mixed)
    rejections = [o for o in again if isinstance(o, Rejection)]
    assert [(r.index, r.reason) for r in rejections] == [
        (1000, "missing field 'ts_recv'"), (2501, "not a trade object but str"),
    ]
    assert state.rejected == 2
    assert comparable([o for o in again if isinstance(o, AnomalyRecord)]) == comparable(outcomes)
    chunked, _ = run(config, mixed, random_sizes(len(mixed), 9))
    assert len([o for o in chunked if isinstance(o, Rejection)]) == 2
    assert comparable([o for o in chunked if isinstance(o, AnomalyRecord)]) == comparable(outcomes)


def test_state_stays_bounded(opening_trades):
    config = DetectorConfig(retrain_every=100, train_size=100, forest_trees=10, trees_per_retrain=5)
    engine = DetectionEngine(config)
    state = engine.new_state("NVDA")
    sizes = []
    for start in range(0, 4000, 500):
        engine.process(state, opening_trades[start:start + 500])
        sizes.append(len(pickle.dumps(engine.snapshot(state))))
    # After the forest is full the snapshot no longer grows with the tape: window, training
    # rows, forest, 512 trade identities, and at most an open incident's trades.
    assert max(sizes[4:]) < 300_000
    assert state.training.shape[0] == config.train_size
    assert len(state.guard.settled().identities) == 512


def test_a_fresh_or_one_trade_instrument_costs_kilobytes(opening_trades):
    engine = DetectionEngine()
    state = engine.new_state("JUNK")
    assert len(pickle.dumps(engine.snapshot(state))) < 1_000
    engine.process(state, opening_trades[:1])
    assert len(pickle.dumps(engine.snapshot(state))) < 8_000


def test_default_state_of_a_busy_instrument_is_bounded(opening_trades):
    engine = DetectionEngine()
    state = engine.new_state("NVDA")
    engine.process(state, opening_trades)
    # window, 500 x 6 training samples, two pending jobs, calibration ring, a young forest,
    # 512 trade identities, the incident tracker's context
    assert len(pickle.dumps(engine.snapshot(state))) < 260_000


@pytest.fixture(scope="module")
def warm_state(request):
    """An instrument whose models already serve (small config), pickled, to start each example from."""
    config = DetectorConfig(retrain_every=20, train_size=20, forest_trees=10, trees_per_retrain=5,
                            background_training=False)
    _, state = run(config, request.getfixturevalue("opening_trades")[:200])
    assert state.generation > 0
    return config, pickle.dumps(DetectionEngine(config).snapshot(state))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=trade_batches(max_size=30))
def test_the_engine_never_raises_and_accounts_for_every_trade(warm_state, batch):
    config, pickled = warm_state
    outcomes, state = run(config, batch, state=DetectionEngine(config).restore(pickle.loads(pickled)))
    rejected = {outcome.index for outcome in outcomes if isinstance(outcome, Rejection)}
    assert state.samples_seen == 200 + len(batch) - len(rejected)
    for outcome in outcomes:
        if isinstance(outcome, AnomalyRecord):
            assert np.isfinite(outcome.severity) and 0 <= outcome.severity <= 1


@pytest.mark.filterwarnings("ignore:The covariance matrix associated to your dataset is not full rank")
def test_an_instrument_printing_one_trade_over_and_over_keeps_being_scored():
    """One price, size and side for 2,100 trades: every model input is constant and the envelope's
    support has no spread. The retrains must still succeed (they once raised at every batch from
    the first refit on, so each later trade became an engine dead letter)."""
    rng = random.Random(0)
    stamp, trades = 1_746_797_400 * 10**9, []
    for sequence in range(1, 2_101):
        stamp += rng.randint(1, 5) * 10**9
        trades.append({"ts_event": stamp, "ts_recv": stamp, "rtype": 0, "publisher_id": 2, "instrument_id": 1,
                       "action": "T", "side": "B", "depth": 0, "price": 25.0, "size": 100, "flags": 0,
                       "ts_in_delta": 0, "sequence": sequence, "symbol": "STALE"})
    config = DetectorConfig(background_training=False)
    engine = DetectionEngine(config)
    state = engine.new_state("STALE")
    outcomes = [o for start in range(0, 2_100, 100) for o in engine.process(state, trades[start:start + 100])]
    assert state.samples_seen == 2_100 and state.generation == 2  # models at 1,500 and 2,000 trades
    assert not [o for o in outcomes if isinstance(o, (Rejection, AnomalyRecord))]


def test_a_repeated_trade_is_a_duplicate_and_changes_nothing(reference):
    config, trades, outcomes, _ = reference
    with_repeats = trades[:2500] + [trades[2400], dict(trades[2450], price=trades[2450]["price"] + 1)] + trades[2500:]
    again, _ = run(config, with_repeats)
    refused = [outcome for outcome in again if isinstance(outcome, Rejection)]
    assert [(r.index, r.stage) for r in refused] == [(2500, "duplicate"), (2501, "duplicate")]
    cut, _ = run(config, with_repeats, random_sizes(len(with_repeats), 4))
    assert comparable([o for o in cut if isinstance(o, AnomalyRecord)]) == comparable(outcomes)
    assert refused[0].reason == f"duplicate: publisher 2, instrument 11667, sequence {trades[2400]['sequence']} was already processed"
    assert comparable([o for o in again if isinstance(o, AnomalyRecord)]) == comparable(outcomes)


def test_a_trade_after_an_idle_day_starts_the_instrument_afresh(opening_trades):
    from connectors.codec import format_timestamp_ns
    from connectors.publisher import timestamp_ns

    config = DetectorConfig(retrain_every=200, train_size=200, forest_trees=20, trees_per_retrain=5,
                            background_training=False)
    day = 86_400 * 10**9
    later = [dict(trade, ts_event=format_timestamp_ns(timestamp_ns(trade["ts_event"]) + 2 * day),
                  ts_recv=format_timestamp_ns(timestamp_ns(trade["ts_recv"]) + 2 * day)) for trade in opening_trades]
    engine = DetectionEngine(config)
    state = engine.new_state("NVDA")
    engine.process(state, opening_trades)
    assert state.generation > 0
    outcomes = engine.process(state, later[:300])
    assert (state.samples_seen, state.generation, state.anomalies) == (300, 0, 0)
    assert state.since_ns == timestamp_ns(later[0]["ts_event"])
    assert not [o for o in outcomes if isinstance(o, Rejection)]  # the same sequences, another day
    # Starting afresh is the same as a new instrument seeing only the later trades.
    fresh = DetectionEngine(config).new_state("NVDA")
    DetectionEngine(config).process(fresh, later[:300])
    assert pickle.dumps(engine.snapshot(state).fstate) == pickle.dumps(DetectionEngine(config).snapshot(fresh).fstate)


@pytest.mark.parametrize("cuts", [[7], [6, 1], [5, 2], [3, 4], [1] * 7])
def test_rejections_count_to_the_state_their_trades_belong_to_whatever_the_batches(opening_trades, cuts):
    """Five trades, a duplicate of the fifth, then one two days later (a fresh start) that is followed
    by a duplicate of itself: the old state ended with one rejection, the new one has one."""
    from connectors.codec import format_timestamp_ns
    from connectors.publisher import timestamp_ns
    from models.engine import StateEnded

    two_days = 2 * 86_400 * 10**9
    later = dict(opening_trades[5], **{name: format_timestamp_ns(timestamp_ns(opening_trades[5][name]) + two_days)
                                       for name in ("ts_event", "ts_recv")})
    trades = opening_trades[:5] + [opening_trades[4], later]
    engine = DetectionEngine(DetectorConfig(background_training=False))
    state = engine.new_state("NVDA")
    outcomes = [o for batch in _cut(trades, cuts) for o in engine.process(state, batch)]
    (ended,) = [o for o in outcomes if isinstance(o, StateEnded)]
    assert (ended.summary["trades_processed"], ended.summary["rejected"]) == (5, 1)
    assert (state.samples_seen, state.rejected) == (1, 0)
    engine.process(state, [later])
    assert (state.samples_seen, state.rejected) == (1, 1)


@pytest.mark.parametrize("cuts", [[3], [1, 2], [2, 1], [1, 1, 1]])
def test_rejections_while_dormant_count_to_the_state_the_next_trade_starts(opening_trades, cuts):
    """A repeat refused while the instrument was dormant, then a trade that goes on the same day
    and one two days later (a fresh start): the state the first one starts ends with the repeat
    among its rejections, whatever the batches (it was counted in one batch and lost in two)."""
    from connectors.codec import format_timestamp_ns
    from connectors.publisher import timestamp_ns
    from models.engine import StateEnded

    two_days = 2 * 86_400 * 10**9
    later = dict(opening_trades[6], **{name: format_timestamp_ns(timestamp_ns(opening_trades[6][name]) + two_days)
                                       for name in ("ts_event", "ts_recv")})
    engine = DetectionEngine(DetectorConfig(background_training=False))
    state = engine.new_state("NVDA")
    engine.process(state, opening_trades[:5])
    state = engine.dormant(state)
    trades = [opening_trades[4], opening_trades[5], later]
    outcomes = [o for batch in _cut(trades, cuts) for o in engine.process(state, batch)]
    assert [o.stage for o in outcomes if isinstance(o, Rejection)] == ["duplicate"]
    (ended,) = [o for o in outcomes if isinstance(o, StateEnded)]
    assert (ended.summary["trades_processed"], ended.summary["rejected"]) == (1, 1)
    assert (state.samples_seen, state.rejected) == (1, 0)


def _cut(trades, sizes):
    start = 0
    for size in sizes:
        yield trades[start:start + size]
        start += size


@pytest.mark.parametrize("count, fresh_starts, expected", [
    (0, frozenset(), []),
    (5, frozenset(), [(0, 5)]),
    (5, frozenset({0}), [(0, 5)]),
    (5, frozenset({2}), [(0, 2), (2, 5)]),
    (5, frozenset({1, 4}), [(0, 1), (1, 4), (4, 5)]),
])
def test_segments_split_a_batch_where_the_instrument_starts_afresh(count, fresh_starts, expected):
    from models.engine import _segments

    assert _segments(count, fresh_starts) == expected
