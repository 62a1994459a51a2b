"""Every rejection reason, and that a bad trade never raises or disappears."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostile_values import trade_batches
from models.trades import TRADE_FIELDS, Validation, _validate_columns, _validate_each, validate_trades

GOOD = {
    "ts_recv": "2025-05-09T13:30:00.892539241Z", "ts_event": "2025-05-09T13:30:00.892370366Z",
    "rtype": 0, "publisher_id": 2, "instrument_id": 11667, "action": "T", "side": "N", "depth": 0,
    "price": 117.33, "size": 1452275, "flags": 0, "ts_in_delta": 168875, "sequence": 42, "symbol": "NVDA",
}


NS = 1_000_000_000


@pytest.mark.parametrize(
    "change, reason",
    [
        *[({name: None}, f"missing field '{name}'") for name in TRADE_FIELDS],
        ({"price": float("nan")}, "price is not finite: nan"),
        ({"price": float("inf")}, "price is not finite: inf"),
        ({"price": 10**400}, f"price is not finite: {'1' + '0' * 59}... (401 characters)"),
        ({"price": 0.0}, "price must be between 0.0001 and 1e+07: 0.0"),
        ({"price": -1.5}, "price must be between 0.0001 and 1e+07: -1.5"),
        ({"price": 1e308}, "price must be between 0.0001 and 1e+07: 1e+308"),
        ({"price": 1e200}, "price must be between 0.0001 and 1e+07: 1e+200"),
        ({"price": 1e-300}, "price must be between 0.0001 and 1e+07: 1e-300"),
        ({"price": 1e-200}, "price must be between 0.0001 and 1e+07: 1e-200"),
        ({"price": "117.33"}, "field 'price' is not a number: '117.33'"),
        ({"price": True}, "field 'price' is not a number: True"),
        ({"size": -5}, "field 'size' must be between 1 and 1,000,000,000: -5"),
        ({"size": 0}, "field 'size' must be between 1 and 1,000,000,000: 0"),
        ({"size": 10**12}, "field 'size' must be between 1 and 1,000,000,000: 1000000000000"),
        ({"size": 1.5}, "field 'size' is not an integer: 1.5"),
        ({"sequence": "x"}, "field 'sequence' is not an integer: 'x'"),
        ({"sequence": -1}, "field 'sequence' must be between 0 and 4,294,967,295: -1"),
        ({"flags": 2**70}, "field 'flags' must be between 0 and 255: 1180591620717411303424"),
        ({"flags": -1}, "field 'flags' must be between 0 and 255: -1"),
        ({"depth": -3}, "field 'depth' must be between 0 and 255: -3"),
        ({"publisher_id": 70_000}, "field 'publisher_id' must be between 0 and 65,535: 70000"),
        ({"instrument_id": 2**32}, "field 'instrument_id' must be between 0 and 4,294,967,295: 4294967296"),
        ({"rtype": 256}, "field 'rtype' must be between 0 and 255: 256"),
        ({"ts_in_delta": 2**31}, "field 'ts_in_delta' must be between -2,147,483,648 and 2,147,483,647: 2147483648"),
        ({"side": "S"}, "side must be A, B or N, got 'S'"),
        ({"side": 1}, "side must be A, B or N, got 1"),
        ({"side": ["A"]}, "side must be A, B or N, got ['A']"),
        ({"action": "A"}, "action must be 'T' (a trade), got 'A'"),
        ({"action": 5}, "action must be 'T' (a trade), got 5"),
        ({"symbol": ""}, "field 'symbol' must be a non-empty string, got ''"),
        ({"symbol": " NVDA"}, "field 'symbol' has surrounding whitespace: ' NVDA'"),
        ({"symbol": "NVDA\n"}, "field 'symbol' has surrounding whitespace: 'NVDA\\n'"),
        ({"symbol": "NV\x00DA"}, "field 'symbol' has unprintable characters: 'NV\\x00DA'"),
        ({"symbol": "X" * 33}, "field 'symbol' is longer than 32 characters (33)"),
        ({"symbol": 7}, "field 'symbol' must be a non-empty string, got 7"),
        ({"ts_event": "yesterday"},
         "field 'ts_event' is not an ISO-8601 UTC timestamp or integer nanoseconds: 'yesterday'"),
        ({"ts_event": "2025-02-30T10:00:00.000000000Z"},
         "field 'ts_event' is not a valid date and time: '2025-02-30T10:00:00.000000000Z'"),
        ({"ts_event": "2300-01-01T00:00:00Z"},
         "field 'ts_event' is outside 2000-01-01 to 2099-12-31: '2300-01-01T00:00:00Z'"),
        ({"ts_event": "2999-01-01T00:00:00.000000000Z"},
         "field 'ts_event' is outside 2000-01-01 to 2099-12-31: '2999-01-01T00:00:00.000000000Z'"),
        ({"ts_event": "1970-01-01T00:00:00.000000000Z"},
         "field 'ts_event' is outside 2000-01-01 to 2099-12-31: '1970-01-01T00:00:00.000000000Z'"),
        ({"ts_event": 0}, "field 'ts_event' is outside 2000-01-01 to 2099-12-31: 0"),
        ({"ts_event": 2**64 - 1}, "field 'ts_event' is outside 2000-01-01 to 2099-12-31: 18446744073709551615"),
        ({"ts_recv": -1}, "field 'ts_recv' is outside 2000-01-01 to 2099-12-31: -1"),
        *[({"ts_event": stamp}, f"field 'ts_event' is not an ISO-8601 UTC timestamp or integer nanoseconds: {stamp!r}")
          for stamp in (
              "2025-05-09T13:30:00.89237036\u00b2Z",  # a superscript two: str.isdigit() says yes, int() no
              "\u0662\u0660\u0662\u0665-05-09T13:30:00.892370366Z",  # Arabic-Indic digits
              "2025-05-09 13:30:00.892370366Z", "2025-05-09T13:30:00.-89237036Z", "2025-05-09T13:30:00.+89237036Z",
              "2025-05-09T13:30:00. 89237036Z", "2025-05-09T13:30:00.8923_0366Z", "2025-05-09T13:30:00Z\n",
          )],
        ({"ts_recv": "2025-05-11T13:30:00.892539241Z"},
         "ts_recv is 172,800.000 s after ts_event (allowed: -60 s to 86,400 s)"),
        ({"ts_recv": "2025-05-09T13:00:00.892370366Z"},
         "ts_recv is -1,800.000 s after ts_event (allowed: -60 s to 86,400 s)"),
    ],
)
@pytest.mark.parametrize("others", [2, 40], ids=["small batch", "column batch"])
def test_each_bad_field_is_rejected_with_its_reason(change, reason, others):
    bad = {**GOOD, **change}
    if None in change.values():
        del bad[next(iter(change))]
    valid, rejections = validate_trades([GOOD, bad] + [GOOD] * (others - 1))
    assert [(r.index, r.reason) for r in rejections] == [(1, reason)]
    assert valid.indices.tolist() == [0, *range(2, others + 1)]


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
    valid, _ = validate_trades([GOOD, {**GOOD, "side": "B", "price": 118, "size": 1, "sequence": 43}])
    assert valid.prices.tolist() == [117.33, 118.0]
    assert valid.sizes.tolist() == [1452275, 1]
    assert valid.sides.tolist() == [0, 2]
    assert valid.sequences.tolist() == [42, 43]


@settings(max_examples=300, deadline=None)
@given(trade_batches())
def test_small_batches_and_column_batches_agree(batch):
    small, small_rejections = _validate_each(batch)
    columns, column_rejections = _validate_columns(batch)
    assert small_rejections == column_rejections
    assert {name: column.tolist() for name, column in vars(small).items()} == {
        name: column.tolist() for name, column in vars(columns).items()}
    assert {name: column.dtype for name, column in vars(small).items()} == {
        name: column.dtype for name, column in vars(columns).items()}


@settings(max_examples=300, deadline=None)
@given(trade_batches())
def test_validation_never_raises_and_accounts_for_every_trade(batch):
    valid, rejections = validate_trades(batch)
    rejected = [r.index for r in rejections]
    assert sorted(rejected + valid.indices.tolist()) == list(range(len(batch)))
    assert all(r.reason for r in rejections)
    assert np.isfinite(valid.prices).all() and (valid.prices > 0).all() and (valid.sizes >= 1).all()


def _as_lists(validation: Validation) -> tuple[dict, list]:
    return {name: column.tolist() for name, column in vars(validation.valid).items()}, validation.rejections


@settings(max_examples=200, deadline=None)
@given(trade_batches(), st.data())
def test_a_batch_validated_once_and_split_is_each_part_validated_alone(batch, data):
    """How the flow validates: the whole input batch in columns, then each instrument's part."""
    drawn = data.draw(st.lists(st.integers(0, 3), min_size=len(batch), max_size=len(batch)))
    codes = {group: code for code, group in enumerate(dict.fromkeys(drawn))}  # dense, by first appearance
    groups = np.array([codes[group] for group in drawn], np.int64)
    positions = [[p for p, g in enumerate(groups) if g == code] for code in range(len(codes))]
    parts = Validation.of(batch).split(groups, len(codes))
    assert len(parts) == len(positions)
    for part, where in zip(parts, positions):
        assert _as_lists(part) == _as_lists(Validation.of([batch[p] for p in where]))


@settings(max_examples=100, deadline=None)
@given(trade_batches(), trade_batches())
def test_joined_validations_are_the_validation_of_the_joined_batch(first, second):
    joined = Validation.join([Validation.of(first), Validation.of(second)], [len(first), len(second)])
    assert _as_lists(joined) == _as_lists(Validation.of(first + second))
