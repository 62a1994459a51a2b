"""DBN trades files record by record, for the file tests: a trades header over NVDA (instrument 11667)
on 2025-05-09, with or without its symbol mapping, and records of trades or of other types."""

from __future__ import annotations

from pathlib import Path

DBN_START = 1_746_797_400_000_000_000  # 2025-05-09T13:30:00Z


def dbn_metadata(mapped: bool = True) -> bytes:
    import datetime
    from types import SimpleNamespace

    import databento_dbn as dbn

    day = SimpleNamespace(start_date=datetime.date(2025, 5, 9), end_date=datetime.date(2025, 5, 10), symbol="11667")
    return dbn.Metadata(dataset="XNAS.ITCH", start=DBN_START, end=DBN_START + 10**13, stype_in=dbn.SType.RAW_SYMBOL,
                        stype_out=dbn.SType.INSTRUMENT_ID, schema=dbn.Schema.TRADES, symbols=["NVDA"],
                        mappings=[SimpleNamespace(raw_symbol="NVDA", intervals=[day])] if mapped else []).encode()


def dbn_trade(sequence: int, instrument_id: int = 11667, ts: int | None = None,
              price: int = 117_330_000_000) -> bytes:
    """A trade record; ``price`` in DBN's fixed point (1e-9), ``databento_dbn.UNDEF_PRICE`` for none."""
    import databento_dbn as dbn

    ts = DBN_START + 1000 * sequence if ts is None else ts
    return bytes(dbn.TradeMsg(2, instrument_id, ts, price, 100, dbn.Action.TRADE, dbn.Side.BID, 0, ts + 150,
                              0, 0, sequence))


def dbn_other(kind: str, sequence: int) -> bytes:
    import databento_dbn as dbn

    ts = DBN_START + 1000 * sequence
    return bytes({
        "mbp-1": lambda: dbn.MBP1Msg(2, 11667, ts, 117_330_000_000, 100, dbn.Action.TRADE, dbn.Side.BID, 0, ts + 150,
                                     sequence=sequence),
        "status": lambda: dbn.StatusMsg(2, 11667, ts, ts + 150),  # shorter than a trade
        "ohlcv-1m": lambda: dbn.OHLCVMsg(dbn.RType.OHLCV_1M, 2, 11667, ts, 1, 2, 3, 4, 5),
        "system": lambda: dbn.SystemMsg(ts, "heartbeat"),  # longer than six trades
    }[kind]())


def write_dbn(path: Path, data: bytes) -> None:
    import zstandard

    path.write_bytes(zstandard.ZstdCompressor().compress(data) if path.name.endswith(".zst") else data)
