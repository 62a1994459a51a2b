"""Scoring on hand-made tapes, where the right answer is counted by hand."""

import numpy as np
import pytest

from benchmarks.scoring import score_anomalies, symbol_sequences
from connectors.injection import LabelledEvent

# One symbol, 1,000 trades with gappy sequences: position i has sequence 10 * i + 3.
SEQUENCES = {"XYZ": np.arange(1_000) * 10 + 3}


def seq(position: int) -> int:
    return position * 10 + 3


def event(kind: str, first: int, last: int, symbol: str = "XYZ") -> LabelledEvent:
    return LabelledEvent(kind, symbol, seq(first), seq(last), last - first + 1, "2025-05-09T15:00:00.000000000Z", "")


def anomalies(*positions: int, symbol: str = "XYZ") -> list[dict]:
    return [{"symbol": symbol, "sequence": seq(p)} for p in positions]


def test_found_events_false_alarms_and_delays_counted_by_hand():
    events = [event("off_market", 200, 200), event("burst", 500, 509), event("ramp", 600, 640)]
    # 200: on the print (delay 0); 515: 6 after the burst ends (delay 15);
    # the ramp (600-640, scored up to 740) is missed; 800 and 850 are one false alarm; 960 is a second one.
    score = score_anomalies(SEQUENCES, events, anomalies(200, 515, 800, 850, 960))
    assert [o.found for o in score.outcomes] == [True, True, False]
    assert [o.delay_trades for o in score.outcomes] == [0, 15, None]
    assert score.found == 2 and score.false_alarms == 2
    assert score.recall == pytest.approx(2 / 3)
    assert score.precision == pytest.approx(0.5)
    assert score.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert score.false_alarms_per_100k == pytest.approx(200.0)
    assert score.median_delay == 7.5 and score.mean_delay == 7.5
    assert score.false_alarm_positions == {"XYZ": [800, 960]}
    kinds = score.by_kind()
    assert kinds["burst"].recall == 1.0 and kinds["burst"].median_delay == 15.0
    assert kinds["ramp"].found == 0 and kinds["ramp"].median_delay is None


def test_the_hundred_trades_after_an_event_count_and_the_hundred_and_first_does_not():
    events = [event("block", 300, 300)]
    assert score_anomalies(SEQUENCES, events, anomalies(400)).outcomes[0].delay_trades == 100
    late = score_anomalies(SEQUENCES, events, anomalies(401))
    assert not late.outcomes[0].found and late.false_alarms == 1
    early = score_anomalies(SEQUENCES, events, anomalies(299))
    assert not early.outcomes[0].found and early.false_alarms == 1


def test_false_anomalies_less_than_a_hundred_trades_apart_are_one_alarm():
    # 10, 109 (99 apart) and 208 (99 after that) chain into one alarm; 308 is 100 after: a new one.
    score = score_anomalies(SEQUENCES, [], anomalies(10, 109, 208, 308))
    assert score.false_alarms == 2
    assert score.false_alarm_positions["XYZ"] == [10, 308]
    assert score.recall == 0.0 and score.precision == 0.0 and score.f1 == 0.0


def test_several_anomalies_on_one_event_are_one_find_and_no_false_alarm():
    score = score_anomalies(SEQUENCES, [event("flash_crash", 100, 399)], anomalies(150, 151, 390, 480))
    assert score.found == 1 and score.false_alarms == 0
    assert score.outcomes[0].delay_trades == 50
    assert score.precision == 1.0 and score.f1 == 1.0


def test_positions_are_counted_per_symbol_and_trades_over_all_symbols():
    tape = [{"symbol": s, "sequence": n} for n in range(1, 501) for s in ("AAA", "BBB")]
    sequences = symbol_sequences(tape)
    events = [LabelledEvent("block", "BBB", 250, 250, 1, "2025-05-09T15:00:00.000000000Z", "")]
    # An anomaly on AAA right at the event's sequence is a false alarm, not a find.
    score = score_anomalies(sequences, events, [{"symbol": "AAA", "sequence": 250}, {"symbol": "BBB", "sequence": 260}])
    assert score.trades == 1_000
    assert score.outcomes[0].delay_trades == 10
    assert score.false_alarms == 1 and score.false_alarms_per_100k == pytest.approx(100.0)


def test_an_anomaly_on_a_trade_not_in_the_tape_is_an_error():
    with pytest.raises(KeyError, match="sequence 4"):
        score_anomalies(SEQUENCES, [], [{"symbol": "XYZ", "sequence": 4}])


def test_an_alarm_inside_the_next_event_is_credited_to_that_event_only():
    # A ramp at 100-140 and a block at 200: 200 is within 100 trades after the ramp,
    # but it is the block's own trade, so it finds the block and not the ramp.
    events = [event("ramp", 100, 140), event("block", 200, 200)]
    score = score_anomalies(SEQUENCES, events, anomalies(200))
    assert [o.found for o in score.outcomes] == [False, True]
    assert score.false_alarms == 0


def test_an_alarm_between_two_close_events_finds_the_first_and_after_both_finds_the_later():
    events = [event("ramp", 100, 140), event("block", 200, 200)]
    between = score_anomalies(SEQUENCES, events, anomalies(170))
    assert [o.delay_trades for o in between.outcomes] == [70, None]
    after_both = score_anomalies(SEQUENCES, events, anomalies(230))
    assert [o.delay_trades for o in after_both.outcomes] == [None, 30]
    both = score_anomalies(SEQUENCES, events, anomalies(120, 200, 230))
    assert [o.delay_trades for o in both.outcomes] == [20, 0]
    assert both.false_alarms == 0 and both.recall == 1.0


def test_overlapping_labels_credit_the_event_that_started_last():
    events = [event("flash_crash", 100, 400), event("off_market", 250, 250)]
    score = score_anomalies(SEQUENCES, events, anomalies(250, 260))
    assert [o.delay_trades for o in score.outcomes] == [160, 0]


@pytest.mark.parametrize("kinds, expected", [
    (("off_market", "block"), 1.0), (("burst",), 40.0), (("ramp",), None),
])
def test_median_delay_of_some_kinds(kinds, expected):
    events = [event("off_market", 100, 100), event("block", 300, 300), event("burst", 500, 520), event("ramp", 700, 720)]
    score = score_anomalies(SEQUENCES, events, anomalies(100, 302, 540))
    assert score.median_delay_of(kinds) == expected
