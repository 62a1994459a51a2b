"""The dataflow in process (bytewax.testing): an engine failure, and a resume from Bytewax's recovery store."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import TestingSink, TestingSource, run_main

from connectors.codec import as_trade_message, encode_trade
from connectors.files import iter_trades
from connectors.messages import DeadLetter, Origin
from flows.dataflow import build_flow
from models.config import DetectorConfig
from models.engine import DetectionEngine
from models.incidents import IncidentUpdate
from models.records import AnomalyRecord

FIXTURES = Path(__file__).parents[1] / "fixtures"
CONFIG = DetectorConfig(retrain_every=200, train_size=200, forest_trees=20, trees_per_retrain=5)
BATCH = 250


@pytest.fixture(scope="module")
def messages():
    trades = list(iter_trades(FIXTURES / "nvda-20250509-open.csv.zst"))
    return [as_trade_message(trade, Origin("open", 0, line), encode_trade(trade)) for line, trade in enumerate(trades)]


def run(items, recovery: Path | None = None, epoch_interval=None):
    anomalies, letters = [], []
    flow = build_flow(TestingSource(items, batch_size=BATCH), TestingSink(anomalies), TestingSink(letters), CONFIG)
    run_main(flow, epoch_interval=epoch_interval, recovery_config=RecoveryConfig(str(recovery)) if recovery else None)
    return anomalies, letters


def comparable(records):
    return [{k: v for k, v in record.to_dict().items() if k != "detected_at"} for record in records]


@pytest.fixture(scope="module")
def uninterrupted(messages):
    anomalies, letters = run(messages)
    assert anomalies and not letters
    return anomalies


def test_an_engine_failure_dead_letters_that_batch_and_the_job_goes_on(messages, uninterrupted, monkeypatch):
    failing = messages[2000:2000 + BATCH]
    poison = failing[17].trade["sequence"]
    real = DetectionEngine.process

    def fails_on_one_batch(self, state, trades, validation=None):
        if any(trade["sequence"] == poison for trade in trades):
            raise ValueError("cannot score this batch")
        return real(self, state, trades, validation)

    monkeypatch.setattr(DetectionEngine, "process", fails_on_one_batch)
    anomalies, letters = run(messages)
    assert [(letter.stage, letter.origin, letter.raw) for letter in letters] == [
        ("engine", message.origin, message.raw) for message in failing
    ]
    assert all(letter.reason == "engine failed on this batch: ValueError: cannot score this batch" for letter in letters)
    assert all(isinstance(letter, DeadLetter) for letter in letters)
    # The state stayed as before the failed batch: the rest is scored as if the batch never came.
    monkeypatch.undo()
    engine = DetectionEngine(CONFIG)
    state = engine.new_state("NVDA")
    expected = []
    for start in range(0, len(messages), BATCH):
        if start != 2000:
            expected += engine.process(state, [m.trade for m in messages[start:start + BATCH]])
    assert comparable(anomalies) == comparable([item for item in expected if isinstance(item, AnomalyRecord)])
    assert {a.anomaly_id for a in uninterrupted if a.trade["sequence"] < failing[0].trade["sequence"]} <= {
        a.anomaly_id for a in anomalies
    }


@pytest.mark.parametrize("stop_at", [1_300, 2_710])
def test_resume_from_the_recovery_store_gives_the_uninterrupted_anomalies(messages, uninterrupted, tmp_path, stop_at):
    init_db_dir(tmp_path, 1)
    items = messages[:stop_at] + [TestingSource.EOF()] + messages[stop_at:]
    first, _ = run(items, tmp_path, timedelta(0))  # every batch an epoch, so every epoch snapshots
    second, _ = run(items, tmp_path, timedelta(0))  # resumes after the EOF, from the snapshots
    assert comparable(first + second) == comparable(uninterrupted)


def test_a_resume_under_other_settings_starts_afresh_and_says_so(messages, tmp_path, capsys):
    """Not the old models and incidents mixed with the new settings: the instruments start as new
    ones would (their open incident closed, ``closed_by: "restart"``) and stderr says why, once."""
    import dataclasses

    other = dataclasses.replace(CONFIG, forest_threshold=0.55)
    init_db_dir(tmp_path, 1)
    stop_at = 1_750  # a batch boundary inside an open incident
    items = messages[:stop_at] + [TestingSource.EOF()] + messages[stop_at:]

    def resumed(config):
        anomalies, letters, updates = [], [], []
        run_main(build_flow(TestingSource(items, batch_size=BATCH), TestingSink(anomalies), TestingSink(letters),
                            config, incident_sink=TestingSink(updates)),
                 epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(tmp_path)))
        return anomalies, letters, updates

    resumed(CONFIG)
    capsys.readouterr()
    anomalies, letters, updates = resumed(other)
    assert capsys.readouterr().err.count("flows.detect_step: instruments saved under other settings "
                                         "(DETECTOR_FOREST_THRESHOLD changed) start afresh") == 1
    engine = DetectionEngine(other)
    expected = engine.process(engine.new_state("NVDA"), [m.trade for m in messages[stop_at:]])
    assert comparable(anomalies) == comparable([o for o in expected if isinstance(o, AnomalyRecord)]) and not letters
    before = DetectionEngine(CONFIG)
    saved = before.new_state("NVDA")
    before.process(saved, [m.trade for m in messages[:stop_at]])
    open_then = saved.tracker.open_incident_id
    assert [(u.incident_id, u.status) for u in updates if u.to_dict()["closed_by"] == "restart"] == (
        [] if open_then is None else [(open_then, "closed")])


def test_incident_sink_receives_the_engine_incident_updates(messages):
    anomalies, letters, incidents = [], [], []
    flow = build_flow(
        TestingSource(messages, batch_size=BATCH), TestingSink(anomalies), TestingSink(letters), CONFIG,
        incident_sink=TestingSink(incidents),
    )
    run_main(flow)
    engine = DetectionEngine(CONFIG)
    expected = [item for item in engine.process(engine.new_state("NVDA"), [m.trade for m in messages])
                if isinstance(item, IncidentUpdate)]
    assert incidents and all(isinstance(item, IncidentUpdate) for item in incidents) and not letters
    assert [without_time(update) for update in incidents] == [without_time(update) for update in expected]
    assert {anomaly.incident_id for anomaly in anomalies} == {update.incident_id for update in incidents}


def without_time(update):
    return {k: v for k, v in update.to_dict().items() if k != "updated_at"}


def _days_later(stamp: str, days: int) -> str:
    from connectors.codec import format_timestamp_ns
    from connectors.publisher import timestamp_ns

    return format_timestamp_ns(timestamp_ns(stamp) + days * 86_400 * 10**9)


def test_the_last_summary_counts_every_trade_at_the_end_of_the_input(messages):
    anomalies, letters, summaries = [], [], []
    flow = build_flow(TestingSource(messages, batch_size=BATCH), TestingSink(anomalies), TestingSink(letters), CONFIG,
                      summary_sink=TestingSink(summaries))
    run_main(flow)
    last = summaries[-1]
    assert last["trades_processed"] == len(messages) and last["anomalies"] == len(anomalies)
    assert (last["source"], last["partition"], last["offset"]) == ("open", 0, len(messages) - 1)
    assert sum(last["anomalies_by_level"].values()) == sum(last["anomalies_by_side"].values()) == len(anomalies)


def test_a_state_that_ends_in_a_batch_still_reports_its_totals(messages):
    from connectors.codec import format_timestamp_ns
    from connectors.publisher import timestamp_ns

    day = 86_400 * 10**9
    later = [as_trade_message(dict(m.trade, ts_event=format_timestamp_ns(timestamp_ns(m.trade["ts_event"]) + 2 * day),
                                   ts_recv=format_timestamp_ns(timestamp_ns(m.trade["ts_recv"]) + 2 * day)),
                              Origin("later", 0, i), m.raw) for i, m in enumerate(messages[:300])]
    summaries, anomalies = [], []
    flow = build_flow(TestingSource(messages + later, batch_size=len(messages) + 300), TestingSink(anomalies),
                      TestingSink([]), CONFIG, summary_sink=TestingSink(summaries))
    run_main(flow)  # one batch: the first day's state ends inside it
    by_state = {}
    for summary in summaries:
        by_state[summary["since"]] = summary
    first, second = sorted(by_state.values(), key=lambda summary: summary["since"])
    assert (first["trades_processed"], second["trades_processed"]) == (len(messages), 300)
    assert first["anomalies"] + second["anomalies"] == len(anomalies)


@pytest.mark.parametrize("junk_time, junk_trades", [
    pytest.param("2099-12-31T00:00:00", 1, id="one in 2099, beyond any wall clock"),
    pytest.param("2026-06-01T00:00:00", 1, id="one in 2026, no instrument's clock"),
    pytest.param("2025-05-12T13:30:00", 3, id="three three days on, a clock but no full window"),
])
def test_junk_trades_far_ahead_do_not_restart_the_other_instruments(messages, monkeypatch, junk_time, junk_trades):
    """Only an instrument with a full window of trades moves the process's clock; a pause lets the
    idle check run while the real instrument has not traded."""
    from datetime import timedelta

    from flows import detect_step

    monkeypatch.setattr(detect_step, "EVICTION_CHECK", timedelta(0))  # a check after every batch, as a slow run
    junk = [dict(messages[0].trade, symbol="ZZZZ", sequence=1 + k, ts_event=f"{junk_time}.00000000{k}Z",
                 ts_recv=f"{junk_time}.10000000{k}Z") for k in range(junk_trades)]
    junk_messages = [as_trade_message(trade, Origin("junk", 0, k), encode_trade(trade)) for k, trade in enumerate(junk)]
    pause = TestingSource.PAUSE(timedelta(seconds=0.3))
    items = messages[:1000] + junk_messages + [pause] + messages[1000:]
    anomalies, letters, updates = run_with_incidents(items)
    clean_anomalies, _, clean_updates = run_with_incidents(messages)
    assert comparable([a for a in anomalies if a.symbol == "NVDA"]) == comparable(clean_anomalies) and not letters
    assert [u.to_dict()["status"] for u in updates] == [u.to_dict()["status"] for u in clean_updates]


def run_with_incidents(items):
    anomalies, letters, updates = [], [], []
    flow = build_flow(TestingSource(items, batch_size=BATCH), TestingSink(anomalies), TestingSink(letters), CONFIG,
                      incident_sink=TestingSink(updates))
    run_main(flow)
    return anomalies, letters, updates


@pytest.mark.parametrize("batch_size", [BATCH, 37, 1])
def test_a_new_instrument_beyond_the_limit_is_refused_and_the_others_go_on(messages, batch_size):
    """The third symbol's trades are dead letters saying why, whatever the batches: an invalid one
    with its own reason, the others (a trade an hour late among them) ``capacity``; the two held
    ones score as alone."""
    symbols = ("AAAA", "BBBB", "CCCC")
    items = [as_trade_message(dict(m.trade, symbol=symbol), m.origin, m.raw)
             for m in messages[:1500] for symbol in symbols]
    early = messages[900].trade
    late = dict(early, symbol="CCCC", sequence=10**9, ts_event=_days_later(early["ts_event"], -1),
                ts_recv=_days_later(early["ts_recv"], -1))
    invalid = dict(messages[901].trade, symbol="CCCC", price=-1.0)
    items[3030:3030] = [as_trade_message(trade, Origin("bad", 0, k), encode_trade(trade))
                        for k, trade in enumerate([late, invalid])]
    anomalies, letters = [], []
    run_main(build_flow(TestingSource(items, batch_size=batch_size), TestingSink(anomalies), TestingSink(letters),
                        CONFIG, max_instruments=2))
    alone, _ = run(messages[:1500])
    assert Counter(letter.stage for letter in letters) == {"capacity": 1501, "validate": 1}
    assert "instrument 'CCCC' not taken: this process holds 2 active instruments, its limit (MAX_INSTRUMENTS=2)" in (
        letters[0].reason)
    for symbol in symbols[:2]:
        held = [{**record, "symbol": "NVDA"} for record in comparable(a for a in anomalies if a.symbol == symbol)]
        assert held == comparable(alone)


def test_a_replay_after_the_instrument_went_dormant_is_refused_in_the_flow(messages, monkeypatch):
    """Another instrument trading two days on makes NVDA idle; its replayed trades are still repeats."""
    from flows import detect_step

    monkeypatch.setattr(detect_step, "EVICTION_CHECK", timedelta(0))  # a check after every batch, as a slow run
    other = [as_trade_message(dict(m.trade, symbol="OTHR", ts_event=_days_later(m.trade["ts_event"], 2),
                                   ts_recv=_days_later(m.trade["ts_recv"], 2)), Origin("other", 1, k), m.raw)
             for k, m in enumerate(messages[:300])]
    replay = [as_trade_message(m.trade, Origin("replay", 0, k), m.raw) for k, m in enumerate(messages[1500:2000])]
    items = messages[:2000] + other + [TestingSource.PAUSE(timedelta(seconds=0.3))] + replay
    _, letters = run(items)
    assert len(letters) == 500 and {letter.stage for letter in letters} == {"duplicate"}


