"""Contract-shaped incidents and richer summaries, built from the engine's recorded anomalies.

The job does not write the ``incidents`` topic or the richer instrument summaries
yet (docs/CONTRACTS.md, issue 9). Until it does, the dashboard is tested on
messages built here, deterministically, from what the real engine recorded
(``record_fixture.py``) and from the tapes it ran on:

- anomalies get the contract's new fields (``incident_id``, ``model``,
  ``ensemble_score``, an explanation in plain units) only where they are missing;
- incidents group each symbol's anomalies (a new incident after 100 quiet trades;
  ``auction`` when most members are cross prints); every state change is one message
  (``open``, ``updated`` every 25 members and at the last, ``closed`` unless it is
  the symbol's last incident, which stays open), with the price path, move and
  recovery measured on the tape; an incident overlapping an injected event takes
  its kind;
- summaries come once per symbol and second of event time, counting the
  anomalies and incidents so far, with the input partition and offset of the
  second's last trade (symbols spread over ``PARTITIONS`` as listed below).

When the engine writes incidents and these summaries, re-record the fixtures from
it and reduce this module to the fields it still does not write.
"""

from __future__ import annotations

import statistics
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import orjson

from connectors.files import iter_trades
from record_fixture import synthetic_tape  # tests/dashboard is put on sys.path by its conftest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SYNTHETIC_ANOMALIES = FIXTURES / "anomalies_recorded.jsonl"
NVDA_OPEN_ANOMALIES = FIXTURES / "anomalies_nvda_open.jsonl"
NVDA_OPEN_TRADES = FIXTURES / "nvda-20250509-open.csv.zst"
PARTITION_OF = {"NVDA": 0, "SYN0": 0, "SYN1": 1, "SYN2": 2}
QUIET_TRADES = 100
UPDATE_EVERY = 25
CONTEXT_TRADES = 50
PATH_LIMIT = 300
PROCESSED_AT = "2026-11-29T02:50:00.000000Z"
INJECTED_KINDS = {"off_market": "off_market_print", "block": "block", "burst": "burst", "ramp": "ramp",
                  "flash_crash": "flash_crash", "sweep": "other"}
LEVEL_FLOORS = (("critical", 0.8), ("high", 0.6), ("medium", 0.4))
LEVELS = ("low", "medium", "high", "critical")
CLOSE_AFTER_NS = 30 * 10**9


def level_of(severity: float) -> str:
    return next((name for name, floor in LEVEL_FLOORS if severity > floor), "low")


@dataclass
class World:
    """Everything the job would have published for the recorded tapes."""

    input_topic: str
    anomalies: list[dict]
    incident_messages: list[dict]
    summaries: list[dict]
    trades: dict[str, list[dict]] = field(repr=False)

    def lines(self, rows: list[dict]) -> list[bytes]:
        return [orjson.dumps(row) for row in rows]

    def final_incidents(self) -> dict[str, dict]:
        """The last message of each incident: what a reader of the compacted topic ends with."""
        return {message["incident_id"]: message for message in self.incident_messages}

    def newest_summaries(self) -> dict[str, dict]:
        return {summary["symbol"]: summary for summary in self.summaries}


def build_world(input_topic: str = "stocks") -> World:
    synthetic, events = synthetic_tape()
    trades: dict[str, list[dict]] = defaultdict(list)
    for trade in [*iter_trades(NVDA_OPEN_TRADES), *synthetic]:
        trades[trade["symbol"]].append(trade)
    recorded = [orjson.loads(line) for path in (NVDA_OPEN_ANOMALIES, SYNTHETIC_ANOMALIES)
                for line in path.read_bytes().splitlines()]
    anomalies, incident_messages = [], []
    for symbol in sorted({record["symbol"] for record in recorded}):
        members = sorted((r for r in recorded if r["symbol"] == symbol), key=lambda r: r["sequence"])
        tape = Tape(trades[symbol])
        groups = _group(members, tape)
        for number, group in enumerate(groups):
            incident_id = "INC-" + group[0]["anomaly_id"]
            anomalies.extend(_upgrade_anomaly(record, incident_id) for record in group)
            kind = _kind(group, [event for event in events if event.symbol == symbol])
            incident_messages.extend(_incident_messages(incident_id, group, kind, tape,
                                                        stays_open=number == len(groups) - 1))
    anomalies.sort(key=lambda row: (row["ts_event"], row["symbol"], row["sequence"]))
    incident_messages.sort(key=lambda row: (row["updated_order"], row["incident_id"], row["revision"]))
    for message in incident_messages:
        del message["updated_order"]
    summaries = _summaries(trades, anomalies, incident_messages, input_topic)
    return World(input_topic, anomalies, incident_messages, summaries, dict(trades))


class Tape:
    """One symbol's trades in order, found by sequence."""

    def __init__(self, trades: list[dict]) -> None:
        self.trades = trades
        self.position = {trade["sequence"]: index for index, trade in enumerate(trades)}

    def at(self, record: dict) -> int:
        index = self.position.get(record["sequence"])
        trade = None if index is None else self.trades[index]
        if trade is None or trade["price"] != record["price"] or trade["ts_event"] != record["ts_event"]:
            raise AssertionError(f"{record['anomaly_id']} is not on the tape: the recorded anomalies and "
                                 "the tape disagree; re-record with tests/dashboard/record_fixture.py")
        return index


def _group(members: list[dict], tape: Tape) -> list[list[dict]]:
    groups: list[list[dict]] = []
    for record in members:
        if groups:
            if tape.at(record) - tape.at(groups[-1][-1]) <= QUIET_TRADES:
                groups[-1].append(record)
                continue
        groups.append([record])
    return groups


def _kind(group: list[dict], events: list) -> str:
    if 2 * sum(record["kind"] == "auction" for record in group) > len(group):
        return "auction"
    first, last = group[0]["sequence"], group[-1]["sequence"]
    for event in events:
        if event.first_sequence <= last + QUIET_TRADES and event.last_sequence >= first - QUIET_TRADES:
            return INJECTED_KINDS[event.kind]
    return "other"


def _upgrade_anomaly(record: dict, incident_id: str) -> dict:
    upgraded = dict(record)
    upgraded.setdefault("incident_id", incident_id)
    upgraded.setdefault("model", "instrument")
    upgraded.setdefault("inputs", {})
    ratios = [min(verdict["score"] / verdict["threshold"], 10.0) for verdict in record["detectors"].values()]
    upgraded.setdefault("ensemble_score", sum(ratios) / len(ratios))
    upgraded["explanation"] = [
        item if "text" in item else {
            "input": item["feature"], "value": item["value"],
            "text": f"{item['feature'].replace('_', ' ')} {item['value']:.6g}, "
                    f"{abs(item['zscore']):.1f} standard deviations {'above' if item['zscore'] > 0 else 'below'} "
                    "its mean over the training trades",
        }
        for item in record.get("explanation") or []
    ]
    return upgraded


def _incident_messages(incident_id: str, group: list[dict], kind: str, tape: Tape, stays_open: bool) -> list[dict]:
    cuts = sorted({*range(1, len(group) + 1, UPDATE_EVERY), len(group)})
    messages = []
    for revision, cut in enumerate(cuts):
        message = _incident_state(incident_id, group[:cut], kind, tape)
        message.update(status="open" if revision == 0 else "updated", revision=revision)
        messages.append(message)
    if not stays_open:
        closed = dict(messages[-1], status="closed", revision=len(messages))
        closed["updated_order"] = closed["updated_order"] + CLOSE_AFTER_NS  # quiet long enough after the last member
        messages.append(closed)
    return messages


def _incident_state(incident_id: str, members: list[dict], kind: str, tape: Tape) -> dict:
    first, last = tape.at(members[0]), tape.at(members[-1])
    span = tape.trades[first:last + 1]
    before = tape.trades[max(0, first - 100):first]
    reference = before[-1]["price"] if before else span[0]["price"]
    extreme = max(span, key=lambda trade: abs(trade["price"] - reference))["price"]
    move_bps = 1e4 * (extreme / reference - 1)
    retraced = None if extreme == reference else 1 - (span[-1]["price"] - reference) / (extreme - reference)
    recovered = None if retraced is None else max(0.0, min(1.0, retraced))
    peak = max(members, key=lambda record: (record["severity"], record["anomaly_id"]))
    context = tape.trades[max(0, first - CONTEXT_TRADES):first]
    path = [*context, *span][:PATH_LIMIT]
    first_ns, last_ns = (ns_of(trade["ts_event"]) for trade in (span[0], span[-1]))
    max_size = max(trade["size"] for trade in span)
    median = statistics.median([trade["size"] for trade in before]) if before else max_size
    direction = None if kind in ("block", "burst", "auction", "other") else ("up" if move_bps > 0 else "down")
    duration = (last_ns - first_ns) / 1e9
    return {
        "incident_id": incident_id, "symbol": members[0]["symbol"],
        "instrument_id": members[0].get("instrument_id"), "publisher_id": members[0]["trade"]["publisher_id"],
        "kind": kind, "direction": direction,
        "first_sequence": members[0]["sequence"], "last_sequence": members[-1]["sequence"],
        "first_ts_event": span[0]["ts_event"], "last_ts_event": span[-1]["ts_event"],
        "duration_s": duration, "anomalies": len(members), "trades": len(span),
        "reference_price": reference, "price_move_bps": move_bps, "recovered": recovered,
        "max_size": max_size, "size_vs_median": max_size / max(median, 1),
        "severity": peak["severity"], "level": level_of(peak["severity"]),
        "peak_anomaly_id": peak["anomaly_id"], "peak_severity": peak["severity"],
        "anomaly_ids": [record["anomaly_id"] for record in members[:50]],
        "summary": f"{members[0]['symbol']} {kind.replace('_', ' ')}: {move_bps / 100:+.2f}% over "
                   f"{len(span)} trades in {duration:.1f} s, {len(members)} anomalies",
        "explanation": _upgrade_anomaly(peak, incident_id)["explanation"],
        "price_path": [[ns_of(trade["ts_event"]), trade["price"], trade["size"], trade["side"]] for trade in path],
        "updated_at": PROCESSED_AT,
        "updated_order": last_ns,
    }


def _summaries(trades: dict[str, list[dict]], anomalies: list[dict], incident_messages: list[dict],
               input_topic: str) -> list[dict]:
    """One summary per symbol and second of event time, in event-time order, as the job publishes them."""
    offsets = _input_offsets(trades)
    per_symbol: dict[str, list[dict]] = defaultdict(list)
    for record in anomalies:
        per_symbol[record["symbol"]].append(record)
    summaries = []
    for symbol, tape in trades.items():
        found = per_symbol[symbol]
        stamps = [ns_of(record["ts_event"]) for record in found]
        incidents: dict[str, list[dict]] = defaultdict(list)
        for message in incident_messages:
            if message["symbol"] == symbol:
                incidents[message["incident_id"]].append(message)
        for index, trade in enumerate(tape):
            if index + 1 < len(tape) and tape[index + 1]["ts_event"][:19] == trade["ts_event"][:19]:
                continue  # not the last trade of its second
            now = ns_of(trade["ts_event"])
            so_far = found[:bisect_right(stamps, now)]
            summaries.append({
                "symbol": symbol, "ts_event": now, "last_price": trade["price"], "trades_processed": index + 1,
                "anomalies": len(so_far), "rejected": 0,
                "model_generation": so_far[-1]["model_generation"] if so_far else 0,
                "incidents": sum(ns_of(messages[0]["first_ts_event"]) <= now for messages in incidents.values()),
                "open_incident_level": _worst_open(incidents, now),
                "anomalies_by_level": {level: sum(r["level"] == level for r in so_far) for level in LEVELS},
                "anomalies_by_side": {side: sum(r["side"] == side for r in so_far) for side in "ABN"},
                "severity_sum": sum(r["severity"] for r in so_far),
                "severity_max": max((r["severity"] for r in so_far), default=0.0),
                "source": input_topic, "partition": PARTITION_OF[symbol], "offset": offsets[symbol][index],
            })
    summaries.sort(key=lambda row: (row["ts_event"], row["symbol"]))
    return summaries


def _worst_open(incidents: dict[str, list[dict]], now: int) -> str | None:
    """The level of the worst incident open at ``now``: begun, and not closed yet."""
    levels = []
    for messages in incidents.values():
        if ns_of(messages[0]["first_ts_event"]) > now:
            continue
        if messages[-1]["status"] == "closed" and ns_of(messages[-1]["last_ts_event"]) + CLOSE_AFTER_NS <= now:
            continue
        seen = [m for m in messages if m["status"] != "closed" and ns_of(m["last_ts_event"]) <= now] or messages[:1]
        levels.append(seen[-1]["level"])
    return max(levels, key=LEVELS.index, default=None)


def _input_offsets(trades: dict[str, list[dict]]) -> dict[str, list[int]]:
    """Each trade's offset in its input partition, trades of a partition in event-time order."""
    by_partition: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
    for symbol, tape in trades.items():
        by_partition[PARTITION_OF[symbol]].extend((trade["ts_event"], symbol, index) for index, trade in enumerate(tape))
    offsets = {symbol: [0] * len(tape) for symbol, tape in trades.items()}
    for entries in by_partition.values():
        for offset, (_stamp, symbol, index) in enumerate(sorted(entries)):
            offsets[symbol][index] = offset
    return offsets


def ns_of(stamp: str) -> int:
    """An ISO-8601 UTC time with nanoseconds as integer nanoseconds."""
    day, clock = stamp.rstrip("Z").split("T")
    whole, _, fraction = clock.partition(".")
    seconds = int(datetime.fromisoformat(f"{day}T{whole}").replace(tzinfo=timezone.utc).timestamp())
    return seconds * 1_000_000_000 + int(fraction.ljust(9, "0"))
