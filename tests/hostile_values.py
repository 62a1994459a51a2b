"""Hypothesis strategies for hostile input: any bytes, any JSON, trades with any field values.

Shared by the property tests of the decoder, the validator and the engine, which all
promise the same thing: never raise, never drop, whatever arrives.
"""

from __future__ import annotations

from hypothesis import strategies as st

GOOD_TRADE = {
    "ts_recv": "2025-05-09T13:30:00.892539241Z", "ts_event": "2025-05-09T13:30:00.892370366Z",
    "rtype": 0, "publisher_id": 2, "instrument_id": 11667, "action": "T", "side": "B", "depth": 0,
    "price": 117.33, "size": 100, "flags": 0, "ts_in_delta": 168875, "sequence": 42, "symbol": "NVDA",
}

numbers = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 2**63 - 1, 2**63, 2**64 - 1, 1e308, 1e-300, -0.0, 5e-324]),
)
texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "T", "A", "B", "N", "NVDA", " NVDA", "NVDA\n", "2999-01-01T00:00:00Z",
                     "2025-05-09T13:30:00.892370366Z", "9999-12-31T23:59:59.999999999Z", "nan", "\x00"]),
    # nearly the wire format: a parser looser in one path than in the other shows here
    st.builds(lambda second, fraction: f"2025-05-09{second}.{fraction}Z",
              st.sampled_from(["T13:30:00", " 13:30:00", "T13:30:0\u00b2", "T13-30-00"]),
              st.sampled_from(["892370366", "89237036\u00b2", "-89237036", "+89237036", " 89237036", "8923_0366",
                               "\u0668\u0669\u0662\u0663\u0667\u0660\u0663\u0666\u0666"])),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)


@st.composite
def hostile_trades(draw) -> dict:
    """A trade with a few fields replaced by hostile values, dropped, or extra fields added."""
    trade = dict(GOOD_TRADE)
    for name in draw(st.lists(st.sampled_from(sorted(GOOD_TRADE)), max_size=4, unique=True)):
        if draw(st.booleans()):
            trade[name] = draw(json_values)
        else:
            del trade[name]
    if draw(st.booleans()):
        trade[draw(st.text(max_size=8))] = draw(json_values)
    return trade


def trade_batches(max_size: int = 20):
    """Batches of one instrument's trades: mostly valid ones with hostile ones among them."""
    valid = st.builds(lambda sequence, price, size: {**GOOD_TRADE, "sequence": sequence, "price": price, "size": size},
                      st.integers(0, 10**6), st.floats(100, 130), st.integers(1, 5000))
    return st.lists(st.one_of(valid, hostile_trades(), json_values), max_size=max_size)
