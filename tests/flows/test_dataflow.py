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
from flows.instruments import EventClock
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
    assert capsys.readouterr().err.count("flows.dataflow: instruments saved under other settings "
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


def test_a_symbol_without_an_accepted_trade_keeps_no_state(messages):
    from flows.dataflow import InstrumentDetector, group_by_symbol

    junk = as_trade_message({"symbol": "JUNK", "price": -1}, Origin("t", 0, 1), b"{}")
    detector = InstrumentDetector(DetectionEngine(CONFIG), EventClock(), None)
    out, discard = detector.on_batch([batch for _, batch in group_by_symbol([junk])])
    assert discard is InstrumentDetector.DISCARD and [letter.stage for letter in out] == ["validate"]


@pytest.mark.parametrize("check", ["on_notify", "on_eof"])  # the 30 s check, or the end of the input
def test_an_instrument_idle_for_a_day_goes_dormant_and_is_let_go_after_a_week(messages, check):
    from flows.dataflow import InstrumentDetector, group_by_symbol

    clock = EventClock()
    detector = InstrumentDetector(DetectionEngine(CONFIG), clock, None)
    fed = 0
    while detector.state is None or detector.state.tracker.open_incident_id is None:  # stop inside an incident
        _, discard = detector.on_batch([batch for _, batch in group_by_symbol(messages[fed:fed + 20])])
        fed += 20
        assert discard is InstrumentDetector.RETAIN and fed < len(messages)
    detector.on_batch([batch for _, batch in group_by_symbol(messages[fed:fed + 1])])  # a summary, then one more
    open_id, trades = detector.state.tracker.open_incident_id, detector.state.samples_seen
    assert detector.on_notify() == ([], InstrumentDetector.RETAIN)
    last_ns = detector.state.last_timestamp_ns
    clock.advance(last_ns + 86_400 * 10**9 + 1)  # another instrument a day later
    (closing, summary), discard = getattr(detector, check)()
    assert discard is InstrumentDetector.RETAIN
    assert (closing.incident_id, closing.status, closing.closed_by) == (open_id, "closed", "idle")
    assert summary.fields["trades_processed"] == trades
    dormant = detector.state
    assert (dormant.samples_seen, dormant.fstate, dormant.tracker, dormant.last_timestamp_ns) == (0, None, None, last_ns)
    assert len(dormant.guard.memory.identities) == CONFIG.remembered_trades
    assert getattr(detector, check)() == ([], InstrumentDetector.RETAIN)  # nothing more to say
    detector.on_notify()  # the interval's check, so the next one finds no trade in it
    clock.advance(last_ns + 7 * 86_400 * 10**9 + 1)  # a week on
    assert getattr(detector, check)() == ([], InstrumentDetector.DISCARD)


@pytest.mark.parametrize("stopping", [False, True])
def test_a_stop_is_a_pause_no_instrument_goes_dormant_at_its_end(messages, stopping):
    """An instrument on a partition read behind the others looks a day idle to the process's clock;
    the end of the input by a stop (a signal) must leave it as it is, or a restart with -r would start
    it afresh; the end of the trades (a backtest) lets it go dormant as ever."""
    import threading

    from flows.dataflow import InstrumentDetector, group_by_symbol

    clock, stop = EventClock(), threading.Event()
    detector = InstrumentDetector(DetectionEngine(CONFIG), clock, None, stopping=stop)
    detector.on_batch([batch for _, batch in group_by_symbol(messages[:2_000])])
    trades, window = detector.state.samples_seen, detector.state.fstate
    clock.advance(detector.state.last_timestamp_ns + 2 * 86_400 * 10**9)  # another partition, two days on
    if stopping:
        stop.set()
    out, discard = detector.on_eof()
    assert discard is InstrumentDetector.RETAIN
    if stopping:
        assert out == []  # its last batch was summarised already; no closing by "idle"
        assert (detector.state.samples_seen, detector.state.fstate) == (trades, window)
    else:
        assert detector.state.samples_seen == 0 and detector.state.fstate is None


@pytest.mark.parametrize("check", ["on_notify", "on_eof"])
def test_repeats_refused_after_the_last_summary_are_in_the_summary_an_instrument_goes_dormant_with(messages, check):
    """Trades, their summary, then a batch of repeats only (no new second, so no summary): going
    dormant said nothing, and those rejections were never published."""
    from flows.dataflow import InstrumentDetector, group_by_symbol

    clock = EventClock()
    detector = InstrumentDetector(DetectionEngine(CONFIG), clock, None)
    (summary,), _ = detector.on_batch([batch for _, batch in group_by_symbol(messages[:1])])
    assert (summary.fields["trades_processed"], summary.fields["rejected"]) == (1, 0)
    letters, _ = detector.on_batch([batch for _, batch in group_by_symbol(messages[:1] * 3)])
    assert [letter.stage for letter in letters] == ["duplicate"] * 3
    detector.on_notify()
    clock.advance(detector.state.last_timestamp_ns + 86_400 * 10**9 + 1)
    (summary,), _ = getattr(detector, check)()
    assert (summary.fields["trades_processed"], summary.fields["rejected"]) == (1, 3)


def test_a_dormant_instrument_still_refuses_a_replay_of_its_trades_and_scores_new_ones_afresh(messages):
    """A replay of the trades processed before it went dormant is refused as repeats, as by the full
    state; its next trades, a day later, score as a new instrument's would (the window starts again)."""
    from flows.dataflow import InstrumentDetector, group_by_symbol

    engine, clock = DetectionEngine(CONFIG), EventClock()
    detector = InstrumentDetector(engine, clock, None)
    detector.on_batch([batch for _, batch in group_by_symbol(messages[:2000])])
    clock.advance(detector.state.last_timestamp_ns + 86_400 * 10**9 + 1)
    detector.on_notify(), detector.on_notify()
    replayed, discard = detector.on_batch([batch for _, batch in group_by_symbol(messages[1500:2000])])
    assert discard is InstrumentDetector.RETAIN and len(replayed) == 500
    assert {letter.stage for letter in replayed} == {"duplicate"}
    next_day = [as_trade_message(dict(m.trade, ts_event=_days_later(m.trade["ts_event"], 2),
                                      ts_recv=_days_later(m.trade["ts_recv"], 2)), m.origin, m.raw)
                for m in messages[2000:]]
    out, _ = detector.on_batch([batch for _, batch in group_by_symbol(next_day)])
    fresh = engine.new_state("NVDA")
    expected = engine.process(fresh, [m.trade for m in next_day])
    assert comparable([o for o in out if isinstance(o, AnomalyRecord)]) == comparable(
        [o for o in expected if isinstance(o, AnomalyRecord)])
    assert detector.state.samples_seen == fresh.samples_seen == len(next_day)


def _days_later(stamp: str, days: int) -> str:
    from connectors.codec import format_timestamp_ns
    from connectors.publisher import timestamp_ns

    return format_timestamp_ns(timestamp_ns(stamp) + days * 86_400 * 10**9)


def test_the_idle_check_time_moves_on_only_when_the_check_ran(messages):
    from datetime import datetime, timezone

    from flows.dataflow import EVICTION_CHECK, InstrumentDetector, group_by_symbol

    before = datetime.now(timezone.utc)
    detector = InstrumentDetector(DetectionEngine(CONFIG), EventClock(), None)
    first = detector.notify_at()
    assert before + EVICTION_CHECK <= first <= datetime.now(timezone.utc) + EVICTION_CHECK
    detector.on_batch([batch for _, batch in group_by_symbol(messages[:50])])
    assert detector.notify_at() == first  # a batch does not push the check back
    detector.on_notify()
    assert detector.notify_at() > first


def test_the_last_summary_counts_every_trade_at_the_end_of_the_input(messages):
    anomalies, letters, summaries = [], [], []
    flow = build_flow(TestingSource(messages, batch_size=BATCH), TestingSink(anomalies), TestingSink(letters), CONFIG,
                      summary_sink=TestingSink(summaries))
    run_main(flow)
    last = summaries[-1]
    assert last["trades_processed"] == len(messages) and last["anomalies"] == len(anomalies)
    assert (last["source"], last["partition"], last["offset"]) == ("open", 0, len(messages) - 1)
    assert sum(last["anomalies_by_level"].values()) == sum(last["anomalies_by_side"].values()) == len(anomalies)


@pytest.mark.parametrize("summaries", [True, False])
def test_summaries_are_made_only_where_something_reads_them(messages, summaries):
    from flows.dataflow import InstrumentDetector, InstrumentSummary, group_by_symbol

    detector = InstrumentDetector(DetectionEngine(CONFIG), EventClock(), None, summaries=summaries)
    out, _ = detector.on_batch([batch for _, batch in group_by_symbol(messages[:300])])
    at_end, _ = detector.on_eof()
    made = [item for item in out + at_end if isinstance(item, InstrumentSummary)]
    assert len(made) == (1 if summaries else 0)  # the batch reached a new second; the end adds nothing new
    assert detector.state.samples_seen == 300


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


def test_an_instrument_given_several_input_batches_at_once_scores_them_as_one(messages):
    """Bytewax may hand the detect step more than one input batch of an instrument in one call."""
    from flows.dataflow import InstrumentDetector, group_by_symbol

    chunks = [messages[:700], messages[700:1900], messages[1900:2600]]
    together = InstrumentDetector(DetectionEngine(CONFIG), EventClock(), None)
    joined, _ = together.on_batch([batch for chunk in chunks for _, batch in group_by_symbol(chunk)])
    engine = DetectionEngine(CONFIG)
    state = engine.new_state("NVDA")
    expected = engine.process(state, [m.trade for m in messages[:2600]])
    records = [item for item in joined if isinstance(item, AnomalyRecord)]
    assert len(records) == sum(isinstance(item, AnomalyRecord) for item in expected) > 0
    assert comparable(records) == comparable([item for item in expected if isinstance(item, AnomalyRecord)])


def test_an_instrument_that_traded_since_the_last_check_is_kept_whatever_the_clock(messages):
    from flows.dataflow import InstrumentDetector, group_by_symbol

    clock = EventClock()
    detector = InstrumentDetector(DetectionEngine(CONFIG), clock, None)
    detector.on_batch([batch for _, batch in group_by_symbol(messages[:100])])
    clock.advance(detector.state.last_timestamp_ns + 2 * 86_400 * 10**9)  # another instrument two days on
    assert detector.on_notify() == ([], InstrumentDetector.RETAIN)  # it traded in this interval
    detector.on_notify()  # a whole interval without a trade
    assert detector.state.samples_seen == 0 and detector.state.fstate is None  # dormant


@pytest.mark.parametrize("junk_time, junk_trades", [
    pytest.param("2099-12-31T00:00:00", 1, id="one in 2099, beyond any wall clock"),
    pytest.param("2026-06-01T00:00:00", 1, id="one in 2026, no instrument's clock"),
    pytest.param("2025-05-12T13:30:00", 3, id="three three days on, a clock but no full window"),
])
def test_junk_trades_far_ahead_do_not_restart_the_other_instruments(messages, monkeypatch, junk_time, junk_trades):
    """Only an instrument with a full window of trades moves the process's clock; a pause lets the
    idle check run while the real instrument has not traded."""
    from datetime import timedelta

    from flows import dataflow

    monkeypatch.setattr(dataflow, "EVICTION_CHECK", timedelta(0))  # a check after every batch, as a slow run
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
    from flows import dataflow

    monkeypatch.setattr(dataflow, "EVICTION_CHECK", timedelta(0))  # a check after every batch, as a slow run
    other = [as_trade_message(dict(m.trade, symbol="OTHR", ts_event=_days_later(m.trade["ts_event"], 2),
                                   ts_recv=_days_later(m.trade["ts_recv"], 2)), Origin("other", 1, k), m.raw)
             for k, m in enumerate(messages[:300])]
    replay = [as_trade_message(m.trade, Origin("replay", 0, k), m.raw) for k, m in enumerate(messages[1500:2000])]
    items = messages[:2000] + other + [TestingSource.PAUSE(timedelta(seconds=0.3))] + replay
    _, letters = run(items)
    assert len(letters) == 500 and {letter.stage for letter in letters} == {"duplicate"}


def test_dormant_instruments_give_way_to_a_new_one_when_the_roster_is_full(messages):
    """Two symbols that traded once and went quiet hold no active place; a third joins, and while
    the roster is crowded the dormant ones are let go at their next check, not a week later."""
    from flows.dataflow import InstrumentDetector, group_by_symbol
    from flows.instruments import InstrumentRoster

    engine, clock, roster = DetectionEngine(CONFIG), EventClock(), InstrumentRoster(limit=2)

    def detector_of(symbol, trades):
        detector = InstrumentDetector(engine, clock, None, roster=roster)
        batch = [as_trade_message(dict(m.trade, symbol=symbol), m.origin, m.raw) for m in trades]
        return detector, detector.on_batch([part for _, part in group_by_symbol(batch)])

    quiet = [detector_of(symbol, messages[:3])[0] for symbol in ("JUNK1", "JUNK2")]
    clock.advance(quiet[0].state.last_timestamp_ns + 2 * 86_400 * 10**9)
    for detector in quiet:
        detector.on_notify(), detector.on_notify()  # the interval it traded in, then one without
    assert roster.held == {"active": 0, "dormant": 2} and not roster.crowded()
    assert [detector.on_notify()[1] for detector in quiet] == [InstrumentDetector.RETAIN] * 2  # kept a week
    _, (out, kept) = detector_of("REAL", messages[3000:3010])
    assert kept is InstrumentDetector.RETAIN and not [item for item in out if isinstance(item, DeadLetter)]
    assert roster.crowded()
    assert quiet[0].on_notify() == ([], InstrumentDetector.DISCARD)
    assert roster.held == {"active": 1, "dormant": 1} and not roster.crowded()
    assert quiet[1].on_notify() == ([], InstrumentDetector.RETAIN)
