"""Every rejection reason, and that a bad trade never raises or disappears."""

from __future__ import annotations

import pytest

from models.trades import TRADE_FIELDS, validate_trades

GOOD = {
    "ts_recv": "2025-05-09T13:30:00.892539241Z", "ts_event": "2025-05-09T13:30:00.892370366Z",
    "rtype": 0, "publisher_id": 2, "instrument_id": 11667, "action": "T", "side": "N", "depth": 0,
    "price": 117.33, "size": 1452275, "flags": 0, "ts_in_delta": 168875, "sequence": 42, "symbol": "NVDA",
}


@pytest.mark.parametrize(
    "change, reason",
    [
        *[({name: None}, f"missing field '{name}'") for name in TRADE_FIELDS],
        ({"price": float("nan")}, "price is not finite: nan"),
        ({"price": float("inf")}, "price is not finite: inf"),
        ({"price": 0.0}, "price must be positive: 0.0"),
        ({"price": -1.5}, "price must be positive: -1.5"),
        ({"price": "117.33"}, "field 'price' is not a number: '117.33'"),
        ({"price": True}, "field 'price' is not a number: True"),
        ({"size": -5}, "negative size: -5"),
        ({"size": 1.5}, "field 'size' is not an integer: 1.5"),
        ({"sequence": "x"}, "field 'sequence' is not an integer: 'x'"),
        ({"flags": 2**70}, "field 'flags' is out of range: 1180591620717411303424"),
        ({"side": "S"}, "side must be A, B or N, got 'S'"),
        ({"side": 1}, "side must be A, B or N, got 1"),
        ({"symbol": ""}, "field 'symbol' must be a non-empty string, got ''"),
        ({"action": 5}, "field 'action' must be a non-empty string, got 5"),
        ({"ts_event": "yesterday"},
         "field 'ts_event' is not an ISO-8601 UTC timestamp or integer nanoseconds: 'yesterday'"),
        ({"ts_event": "2025-02-30T10:00:00.000000000Z"},
         "field 'ts_event' is not a valid date and time: '2025-02-30T10:00:00.000000000Z'"),
        ({"ts_recv": -1}, "field 'ts_recv' is out of range: -1"),
    ],
)
def test_each_bad_field_is_rejected_with_its_reason(change, reason):
    bad = {**GOOD, **change}
    if None in change.values():
        del bad[next(iter(change))]
    valid, rejections = validate_trades([GOOD, bad, GOOD])
    assert [(r.index, r.reason) for r in rejections] == [(1, reason)]
    assert valid.indices.tolist() == [0, 2]


def test_not_a_mapping_is_rejected():
    valid, rejections = validate_trades([GOOD, ["not", "a", "trade"]])
    assert [(r.index, r.reason) for r in rejections] == [(1, "not a trade object but list")]
    assert len(valid) == 1


@pytest.mark.parametrize(
    "stamp, nanos",
    [
        ("2025-05-09T13:30:00.892370366Z", 1746797400892370366),
        ("2025-05-09T13:30:00Z", 1746797400000000000),
        ("2025-05-09T13:30:00.5+00:00", 1746797400500000000),
        (1746797400892370366, 1746797400892370366),
    ],
)
def test_timestamps_as_iso_strings_or_integer_nanoseconds(stamp, nanos):
    valid, rejections = validate_trades([{**GOOD, "ts_event": stamp}])
    assert not rejections
    assert valid.timestamps_ns.tolist() == [nanos]


def test_columns_of_valid_trades():
    valid, _ = validate_trades([GOOD, {**GOOD, "side": "B", "price": 118, "size": 0, "sequence": 43}])
    assert valid.prices.tolist() == [117.33, 118.0]
    assert valid.sizes.tolist() == [1452275, 0]
    assert valid.sides.tolist() == [0, 2]
    assert valid.sequences.tolist() == [42, 43]
