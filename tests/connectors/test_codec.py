"""Decoding never raises: any bytes become a trade message or a dead letter with a reason."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.codec import decode_trade
from connectors.messages import DeadLetter, Origin, TradeMessage
from hostile_values import json_values

ORIGIN = Origin("stocks", 0, 7)


# json.dumps, not orjson: it writes integers beyond 64 bits and NaN, as a hostile client could.
@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), json_values.map(lambda value: json.dumps(value).encode())))
def test_any_bytes_decode_to_a_trade_or_a_dead_letter(raw):
    item = decode_trade(raw, ORIGIN)
    assert isinstance(item, (TradeMessage, DeadLetter))
    if isinstance(item, DeadLetter):
        assert item.reason and item.stage == "decode" and item.raw == raw
    else:
        assert item.trade["symbol"] == item.symbol == item.symbol.strip()


def test_a_symbol_with_spaces_is_not_routed():
    item = decode_trade(b'{"symbol": " NVDA", "price": 1.0}', ORIGIN)
    assert isinstance(item, DeadLetter)
    assert item.reason == "field 'symbol' has surrounding whitespace: ' NVDA'"
