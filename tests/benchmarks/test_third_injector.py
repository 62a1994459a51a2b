"""The third (blind-written) injector on real trades: valid tape, labels that say where each event is, its ranges.

Every check runs on the committed morning slice; on a shared full day as well where ``../shared`` is
beside the checkout, which alone has the pre-market, the after-hours and a close to cut early."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks import SHARED_NVDA, evaluate
from benchmarks.third_injector import KINDS, inject_third
from connectors.files import iter_trades
from connectors.injection import EARLY_CLOSE, NEW_YORK, LabelledEvent, cut_to_early_close, timestamps_ns

DAY = SHARED_NVDA / "xnas-itch-20250505.trades.csv.zst"
SLICE = Path(__file__).resolve().parents[1] / "fixtures" / "nvda-20250509-morning.csv.zst"

OPEN_S, CLOSE_S, EARLY_CLOSE_S = 9.5 * 3600, 16 * 3600, 13 * 3600


@dataclass(frozen=True)
class Injected:
    seed: int
    tape: list[dict]
    events: list[LabelledEvent]
    inserted: set[int]
    """Sequences of the injected prints."""
    changed: set[int]
    """Sequences of the real trades whose copy differs (re-priced by a crash)."""


@pytest.fixture(scope="module")
def full_day() -> list[dict]:
    if not DAY.exists():
        pytest.skip(f"the shared NVDA day {DAY.name} is not in ../shared/data/nvda beside the checkout")
    return list(iter_trades(DAY))


@pytest.fixture(scope="module", params=["morning slice", "full day"])
def day(request) -> list[dict]:
    """The trades every check runs on: the committed 20,000-trade slice, then a shared full day."""
    return list(iter_trades(SLICE)) if request.param == "morning slice" else request.getfixturevalue("full_day")


@pytest.fixture(scope="module")
def pristine(day) -> list[dict]:
    """A copy of the day taken before any injection."""
    return [dict(t) for t in day]


@pytest.fixture(scope="module")
def injections(day, pristine) -> dict[int, Injected]:
    """Seeds 0 and 1 on the day, each injected once."""
    real = {t["sequence"]: t for t in day}
    runs = {}
    for seed in (0, 1):
        tape, events = inject_third(day, seed)
        inserted = {t["sequence"] for t in tape if t["sequence"] not in real}
        changed = {t["sequence"] for t in tape if t["sequence"] in real and t != real[t["sequence"]]}
        runs[seed] = Injected(seed, tape, events, inserted, changed)
    return runs


@pytest.fixture(params=[0, 1])
def injected(request, injections) -> Injected:
    return injections[request.param]


@pytest.fixture(scope="module")
def early_close_day(full_day) -> list[dict]:
    return cut_to_early_close(full_day)


def _new_york_seconds(stamps: list[str]) -> np.ndarray:
    """Seconds since New York midnight of each ISO timestamp."""
    local = pd.to_datetime(timestamps_ns(stamps), utc=True).tz_convert(NEW_YORK)
    return np.asarray((local - local.normalize()).total_seconds())


def _runs(tape: list[dict], events) -> list[tuple[int, int]]:
    """Each label's first and last position in the tape."""
    where = {t["sequence"]: i for i, t in enumerate(tape)}
    return [(where[e.first_sequence], where[e.last_sequence]) for e in events]


def test_sequences_strictly_increase_and_times_never_go_back(injected):
    tape = injected.tape
    assert (np.diff([t["sequence"] for t in tape]) > 0).all()
    assert (np.diff(timestamps_ns([t["ts_event"] for t in tape])) >= 0).all()
    assert (np.diff(timestamps_ns([t["ts_recv"] for t in tape])) >= 0).all()


def test_the_input_is_untouched_and_every_real_trade_kept(injected, day, pristine):
    assert day == pristine
    real = {t["sequence"]: t for t in day}
    assert set(real) <= {t["sequence"] for t in injected.tape}
    assert len(injected.tape) == len(day) + len(injected.inserted)
    assert len(injected.changed) > 1_000
    for trade in (t for t in injected.tape if t["sequence"] in injected.changed):  # crashes re-price, nothing else
        original = real[trade["sequence"]]
        assert {k for k in trade if trade[k] != original[k]} == {"price"}
        assert trade["price"] == round(trade["price"], 2)


def test_injected_prints_are_shaped_like_real_trades(injected, day):
    fields = {k: type(v) for k, v in day[0].items()}
    prints = [t for t in injected.tape if t["sequence"] in injected.inserted]
    assert len(prints) > 1_000
    for trade in prints:
        assert {k: type(v) for k, v in trade.items()} == fields and list(trade) == list(fields)
        for stamp in (trade["ts_event"], trade["ts_recv"]):
            assert len(stamp) == 30 and stamp[10] == "T" and stamp[19] == "." and stamp.endswith("Z")
        assert trade["price"] == round(trade["price"], 2) > 0 and trade["size"] > 0 and trade["side"] in ("A", "B", "N")
    delays = timestamps_ns([t["ts_recv"] for t in prints]) - timestamps_ns([t["ts_event"] for t in prints])
    assert (delays == [t["ts_in_delta"] for t in prints]).all() and (delays >= 0).all()


def test_each_label_is_a_run_of_its_trade_count_in_its_session(injected):
    tape = injected.tape
    for event, (first, last) in zip(injected.events, _runs(tape, injected.events)):
        run = tape[first:last + 1]
        assert len(run) == event.trade_count and run[0]["ts_event"] == event.ts_event
        seconds = _new_york_seconds([t["ts_event"] for t in run])
        expected = "pre_market" if seconds[0] < OPEN_S else "regular" if seconds[0] < CLOSE_S else "after_hours"
        assert event.session == expected
        assert all(np.abs(seconds - cross).min() >= 60 for cross in (OPEN_S, CLOSE_S)), event
        if event.kind != "flash_crash":
            assert run[0]["sequence"] in injected.inserted and run[-1]["sequence"] in injected.inserted


def test_events_are_apart_and_hold_every_change(injected):
    runs = sorted(_runs(injected.tape, injected.events))
    assert all(later[0] - earlier[1] - 1 >= 10 for earlier, later in zip(runs, runs[1:]))
    in_events = {t["sequence"] for first, last in runs for t in injected.tape[first:last + 1]}
    assert injected.inserted | injected.changed <= in_events


def test_eight_of_each_kind(injected):
    assert Counter(e.kind for e in injected.events) == {kind: 8 for kind in KINDS}


@pytest.mark.parametrize("seed", [0, 1])
def test_a_full_day_gets_some_events_in_each_extended_session(full_day, seed):
    sessions = Counter(e.session for e in inject_third(full_day, seed)[1])
    assert sessions["pre_market"] >= 5 and sessions["after_hours"] >= 5 and sessions["regular"] >= 20


def test_each_kind_keeps_to_its_limits(injected, day):
    tape, inserted, changed = injected.tape, injected.inserted, injected.changed
    real = {t["sequence"]: i for i, t in enumerate(day)}
    prices = np.array([t["price"] for t in day])
    for event, (first, last) in zip(injected.events, _runs(tape, injected.events)):
        run = tape[first:last + 1]
        prints = [t for t in run if t["sequence"] in inserted]
        before = real[tape[first - 1]["sequence"]]
        market = round(float(np.median(prices[max(0, before - 14):before + 1])), 2)  # the last 15 real prices
        if event.kind == "flash_crash":
            assert not prints and 160 <= len(run) <= 800 and event.direction in ("up", "down")
            assert sum(t["sequence"] in changed for t in run) >= 0.8 * len(run)
            moves = [t["price"] / prices[real[t["sequence"]]] - 1 for t in run]
            extreme = max(moves) if event.direction == "up" else -min(moves)
            assert 0.0075 <= extreme <= 0.031, event
            continue
        assert not any(t["sequence"] in changed for t in run)
        stamps = timestamps_ns([p["ts_event"] for p in prints])
        span_ns = int(stamps[-1] - stamps[0])
        if event.kind == "block":
            assert len(prints) == len(run) == 1 and event.direction is None
            assert 20_000 <= prints[0]["size"] <= 100_000 and prints[0]["size"] % 100 == 0
            assert prints[0]["price"] == market
        elif event.kind == "off_market":
            assert len(prints) == len(run) == 1 and prints[0]["size"] < 20_000
            away = prints[0]["price"] / market - 1
            assert 0.0039 <= abs(away) <= 0.0301 and event.direction == ("up" if away > 0 else "down")
        elif event.kind == "burst":
            assert 100 <= len(prints) <= 500 and span_ns <= 50_000_000 and len(run) - len(prints) <= 0.1 * len(run)
            assert {p["side"] for p in prints} == {"A", "B"} and all(1 <= p["size"] <= 100 for p in prints)
            assert all(0 <= (p["price"] - market) * (1 if p["side"] == "B" else -1) <= 0.0200001 for p in prints)
        else:
            path = [p["price"] for p in prints]
            assert 20 <= len(prints) <= 120 and span_ns <= 3_000_000_000 and len(run) - len(prints) <= 0.25 * len(run)
            assert {p["side"] for p in prints} == {"B" if event.direction == "up" else "A"}
            assert path == sorted(path, reverse=event.direction == "down")
            assert 0.0039 <= abs(path[-1] / market - 1) <= 0.0151


def test_the_seed_decides_everything(day, injections):
    again, same = inject_third(day, 0)
    assert again == injections[0].tape and same == injections[0].events
    assert [e.first_sequence for e in injections[1].events] != [e.first_sequence for e in same]


@pytest.mark.parametrize("seed", [0, 1])
def test_an_early_close_day_has_no_event_at_its_close_nor_a_regular_one_after(early_close_day, seed):
    """``cut_to_early_close`` moves the after-hours to 13:00-17:00: events there are after-hours, none
    touches the minute either side of the 13:00 close, none is a regular-session one from 12:59 on."""
    tape, events = inject_third(early_close_day, seed, EARLY_CLOSE)
    assert (np.diff([t["sequence"] for t in tape]) > 0).all()
    assert (np.diff(timestamps_ns([t["ts_event"] for t in tape])) >= 0).all()
    assert Counter(e.kind for e in events) == {kind: 8 for kind in KINDS}
    for event, (first, last) in zip(events, _runs(tape, events)):
        seconds = _new_york_seconds([t["ts_event"] for t in tape[first:last + 1]])
        assert np.abs(seconds - EARLY_CLOSE_S).min() >= 60, event
        expected = "pre_market" if seconds[0] < OPEN_S else "regular" if seconds[0] < EARLY_CLOSE_S else "after_hours"
        assert event.session == expected
        assert event.session != "regular" or seconds[-1] < EARLY_CLOSE_S - 60
    assert Counter(e.session for e in events)["after_hours"] >= 5


def test_evaluate_takes_it_as_injector_third():
    args = evaluate.parse_args(["--days", "all", "--injector", "third"])
    spec = evaluate.RunSpec("day", "early-close", 1, None, "defaults", False, injector=args.injector)
    assert spec.name == "day-early-close-third-seed1"  # evaluate.inject's dispatch: tests/benchmarks/test_evaluate.py
