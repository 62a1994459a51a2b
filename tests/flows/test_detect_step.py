"""The detect step alone (``flows.detect_step``): an instrument's batches, going dormant, its summaries, a stop."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.codec import as_trade_message, encode_trade
from connectors.files import iter_trades
from connectors.messages import DeadLetter, Origin
from flows.detect_step import EVICTION_CHECK, InstrumentDetector, InstrumentSummary, group_by_symbol
from flows.instruments import EventClock
from models.config import DetectorConfig
from models.engine import DetectionEngine
from models.records import AnomalyRecord

FIXTURES = Path(__file__).parents[1] / "fixtures"
CONFIG = DetectorConfig(retrain_every=200, train_size=200, forest_trees=20, trees_per_retrain=5)


@pytest.fixture(scope="module")
def messages():
    trades = list(iter_trades(FIXTURES / "nvda-20250509-open.csv.zst"))
    return [as_trade_message(trade, Origin("open", 0, line), encode_trade(trade)) for line, trade in enumerate(trades)]


def comparable(records):
    return [{k: v for k, v in record.to_dict().items() if k != "detected_at"} for record in records]


def _days_later(stamp: str, days: int) -> str:
    from connectors.codec import format_timestamp_ns
    from connectors.publisher import timestamp_ns

    return format_timestamp_ns(timestamp_ns(stamp) + days * 86_400 * 10**9)


def test_a_symbol_without_an_accepted_trade_keeps_no_state(messages):
    junk = as_trade_message({"symbol": "JUNK", "price": -1}, Origin("t", 0, 1), b"{}")
    detector = InstrumentDetector(DetectionEngine(CONFIG), EventClock(), None)
    out, discard = detector.on_batch([batch for _, batch in group_by_symbol([junk])])
    assert discard is InstrumentDetector.DISCARD and [letter.stage for letter in out] == ["validate"]


@pytest.mark.parametrize("check", ["on_notify", "on_eof"])  # the 30 s check, or the end of the input
def test_an_instrument_idle_for_a_day_goes_dormant_and_is_let_go_after_a_week(messages, check):
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


def test_the_idle_check_time_moves_on_only_when_the_check_ran(messages):
    from datetime import datetime, timezone

    before = datetime.now(timezone.utc)
    detector = InstrumentDetector(DetectionEngine(CONFIG), EventClock(), None)
    first = detector.notify_at()
    assert before + EVICTION_CHECK <= first <= datetime.now(timezone.utc) + EVICTION_CHECK
    detector.on_batch([batch for _, batch in group_by_symbol(messages[:50])])
    assert detector.notify_at() == first  # a batch does not push the check back
    detector.on_notify()
    assert detector.notify_at() > first


@pytest.mark.parametrize("summaries", [True, False])
def test_summaries_are_made_only_where_something_reads_them(messages, summaries):
    detector = InstrumentDetector(DetectionEngine(CONFIG), EventClock(), None, summaries=summaries)
    out, _ = detector.on_batch([batch for _, batch in group_by_symbol(messages[:300])])
    at_end, _ = detector.on_eof()
    made = [item for item in out + at_end if isinstance(item, InstrumentSummary)]
    assert len(made) == (1 if summaries else 0)  # the batch reached a new second; the end adds nothing new
    assert detector.state.samples_seen == 300


def test_an_instrument_given_several_input_batches_at_once_scores_them_as_one(messages):
    """Bytewax may hand the detect step more than one input batch of an instrument in one call."""
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
    clock = EventClock()
    detector = InstrumentDetector(DetectionEngine(CONFIG), clock, None)
    detector.on_batch([batch for _, batch in group_by_symbol(messages[:100])])
    clock.advance(detector.state.last_timestamp_ns + 2 * 86_400 * 10**9)  # another instrument two days on
    assert detector.on_notify() == ([], InstrumentDetector.RETAIN)  # it traded in this interval
    detector.on_notify()  # a whole interval without a trade
    assert detector.state.samples_seen == 0 and detector.state.fstate is None  # dormant


def test_dormant_instruments_give_way_to_a_new_one_when_the_roster_is_full(messages):
    """Two symbols that traded once and went quiet hold no active place; a third joins, and while
    the roster is crowded the dormant ones are let go at their next check, not a week later."""
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
