"""Every record the page reads is validated: hostile values give a reason, valid ones a small record."""

from __future__ import annotations

import orjson
import pytest

from dashboard.records import (
    InvalidRecord, Review, decode_anomaly, decode_incident, decode_review, decode_summary, iso_time, time_ns,
)

NS = 1_000_000_000
OPEN_NS = 1746797400892370366  # 2025-05-09T13:30:00.892370366Z


@pytest.fixture
def anomaly(world) -> dict:
    return next(record for record in world.anomalies if record["symbol"] == "SYN2")


@pytest.fixture
def incident(world) -> dict:
    return world.incident_messages[0]


@pytest.fixture
def summary(world) -> dict:
    return world.summaries[-1]


REVIEW = {"incident_id": "INC-NVDA-20250509-2-11667-311190", "decision": "dismissed", "note": "stub quote",
          "analyst": "Ada", "reviewed_at": "2026-11-29T02:50:00.123456Z", "symbol": "NVDA", "kind": "block",
          "level": "high"}


def encoded(record: dict, **changes) -> bytes:
    changed = dict(record)
    for name, value in changes.items():
        if value is DELETE:
            changed.pop(name, None)
        else:
            changed[name] = value
    return orjson.dumps(changed)


DELETE = object()
HOSTILE_TIMES = [
    ("2999-01-01T00:00:00Z", "outside 1990-2100"),
    (2**64 - 1, "outside 1990-2100"),
    (0, "outside 1990-2100"),
    (-5, "outside 1990-2100"),
    ("1969-12-31T23:59:59Z", "outside 1990-2100"),
    ("2025-05-09T13:30:00", "not an ISO-8601 time with a zone"),
    ("yesterday", "not an ISO-8601 time with a zone"),
    ("2025-02-30T00:00:00Z", "not a valid time"),
    (True, "neither an ISO-8601 time nor nanoseconds"),
    (1.7e18, "neither an ISO-8601 time nor nanoseconds"),
    (None, "neither an ISO-8601 time nor nanoseconds"),
]


@pytest.mark.parametrize("value, reason", HOSTILE_TIMES)
def test_times_outside_a_sane_range_or_of_the_wrong_type_are_refused(value, reason):
    with pytest.raises(InvalidRecord, match=reason):
        time_ns(value, "ts_event")


@pytest.mark.parametrize("value, expected", [
    ("2025-05-09T13:30:00.892370366Z", OPEN_NS),
    ("2025-05-09T09:30:00.892370366-04:00", OPEN_NS),
    ("2025-05-09T13:30:00.892370366+00:00", OPEN_NS),
    ("2025-05-09T13:30:00Z", OPEN_NS - 892370366),
    (OPEN_NS, OPEN_NS),
])
def test_times_in_every_contract_form_give_nanoseconds(value, expected):
    assert time_ns(value, "ts_event") == expected
    assert iso_time(expected) == "2025-05-09T13:30:00.%09dZ" % (expected % NS)


@pytest.mark.parametrize("value", [
    "2025-05-09T13:30:00+99:99",  # hours and minutes past any zone
    "2025-05-09T13:30:00+24:00",
    "2025-05-09T13:30:00-24:00",
    "2025-05-09T13:30:00+23:60",
    "2025-05-09T13:30:00-0075",
    "2025-05-09T13:30:00+5:00",
    "٢٠٢٥-05-09T13:30:00Z",  # Arabic-Indic digits: int() reads them as 2025
    "２０２５-05-09T13:30:00Z",  # fullwidth digits
    "2025-05-09T13:30:00.٨٩٢Z",
    "2025-05-09T13:30:00+٠٤:00",
    "2025-05-09T1٣:30:00Z",
])
def test_offsets_of_a_day_or_more_and_other_scripts_digits_are_refused(value):
    with pytest.raises(InvalidRecord, match="not an ISO-8601 time with a zone"):
        time_ns(value, "ts_event")


@pytest.mark.parametrize("value", [
    "2025-05-10T13:29:00.892370366+23:59",
    "2025-05-08T13:31:00.892370366-23:59",
    "2025-05-09T19:00:00.892370366+0530",
    "2025-05-09T13:30:00.892370366-00:00",
    "2025-05-09 09:30:00.892370366-0400",
])
def test_every_offset_under_a_day_is_read(value):
    assert time_ns(value, "ts_event") == OPEN_NS


def test_a_contract_anomaly_becomes_a_small_record(anomaly):
    record = decode_anomaly(orjson.dumps(anomaly))
    assert (record.anomaly_id, record.incident_id, record.symbol) == (
        anomaly["anomaly_id"], anomaly["incident_id"], "SYN2")
    assert (record.price, record.size, record.side, record.kind) == (
        anomaly["price"], anomaly["size"], anomaly["side"], "trade")
    assert (record.severity, record.level, len(record.voted)) == (anomaly["severity"], anomaly["level"], anomaly["votes"])
    assert [(v.name, v.score, v.threshold, v.vote) for v in record.detectors] == [
        (name, verdict["score"], verdict["threshold"], verdict["vote"]) for name, verdict in anomaly["detectors"].items()]
    assert record.explanation == tuple(item["text"] for item in anomaly["explanation"])
    assert time_ns(anomaly["ts_event"], "") == record.ts_ns


def test_a_cold_start_anomaly_shows_its_own_two_detectors(anomaly):
    shared = {**anomaly, "model": "shared", "votes": 1, "detectors": {
        "cold_start_price": {"score": 512.8, "threshold": 200.0, "vote": True},
        "cold_start_size": {"score": 0.4, "threshold": 30.0, "vote": False}}}
    record = decode_anomaly(orjson.dumps(shared))
    assert [(v.name, v.score, v.vote) for v in record.detectors] == [
        ("cold_start_price", 512.8, True), ("cold_start_size", 0.4, False)]
    assert record.voted == ("cold_start_price",)


def test_an_anomaly_from_an_older_job_still_shows():
    old = {"anomaly_id": "NVDA-20250509-3", "symbol": "NVDA", "ts_event": "2025-05-09T13:30:00Z", "price": 117.3,
           "severity": 0.5, "level": "medium",
           "explanation": [{"feature": "current_size", "value": 1452275.0, "zscore": 9.84}]}
    record = decode_anomaly(orjson.dumps(old))
    assert (record.incident_id, record.kind, record.size, record.detectors) == (None, "trade", None, ())
    assert record.explanation == ("current_size = 1.45228e+06 (z 9.8)",)


@pytest.mark.parametrize("changes, reason", [
    ({"ts_event": "2999-01-01T00:00:00Z"}, "'ts_event' is outside 1990-2100"),
    ({"ts_event": 2**64 - 1}, "'ts_event' is outside 1990-2100"),
    ({"severity": 1e308}, "'severity' is outside 0 to 1"),
    ({"severity": -5}, "'severity' is outside 0 to 1"),
    ({"severity": "high"}, "'severity' is not a number"),
    ({"severity": True}, "'severity' is not a number"),
    ({"severity": DELETE}, "'severity' is not a number"),
    ({"price": -1.5}, "'price' is outside 0 to"),
    ({"price": 1e300}, "'price' is outside 0 to"),
    ({"price": "117.3"}, "'price' is not a number"),
    ({"size": -3}, "'size' is outside 0-"),
    ({"size": 2.5}, "'size' is not a whole number"),
    ({"level": "urgent"}, "'level' must be one of low, medium, high, critical"),
    ({"level": ["critical"]}, "'level' must be one of"),
    ({"anomaly_id": ""}, "missing or empty 'anomaly_id'"),
    ({"anomaly_id": 42}, "'anomaly_id' is not text"),
    ({"anomaly_id": "x" * 5000}, "'anomaly_id' is longer than 200"),
    ({"symbol": DELETE}, "missing or empty 'symbol'"),
    ({"symbol": {"$gt": ""}}, "'symbol' is not text"),
    ({"incident_id": 7}, "'incident_id' is not text"),
    ({"kind": "spoof"}, "'kind' must be one of trade, auction"),
    ({"votes": 7}, "'votes' is outside 0-3"),
    ({"detectors": []}, "'detectors' is not an object"),
    ({"detectors": {"zscore": {"score": "NaN", "threshold": 1, "vote": True}}},
     "'detectors.zscore.score' is not a number"),
    ({"detectors": {"zscore": {"score": 1.0, "threshold": 1, "vote": "yes"}}}, "'detectors.zscore.vote'"),
    ({"explanation": "because"}, "'explanation' is not a list"),
    ({"explanation": [3]}, "'explanation[0]' is not an object"),
])
def test_hostile_anomalies_are_refused_with_the_reason(anomaly, changes, reason):
    with pytest.raises(InvalidRecord) as refused:
        decode_anomaly(encoded(anomaly, **changes))
    assert reason in str(refused.value)


@pytest.mark.parametrize("raw, reason", [
    (None, "empty message"),
    (b"{not json", "not valid JSON"),
    (b'{"severity": 1e400}', "not valid JSON"),  # infinity never gets through the decoder
    (b'{"severity": NaN}', "not valid JSON"),
    (b"[1, 2]", "not a JSON object but list"),
    (b'"NVDA"', "not a JSON object but str"),
])
def test_bytes_that_are_not_a_json_object_are_refused(raw, reason):
    for decode in (decode_anomaly, decode_incident, decode_summary, decode_review):
        with pytest.raises(InvalidRecord, match=reason):
            decode(raw)


def test_hostile_text_is_kept_as_text(anomaly):
    hostile = '<img id="injected" src="x" onerror="alert(1)"> **bold** [link](http://x)'
    record = decode_anomaly(encoded(anomaly, symbol=hostile))
    assert record.symbol == hostile


def test_a_contract_incident_becomes_a_small_record(world):
    message = max(world.incident_messages, key=lambda item: len(item["price_path"]))
    incident = decode_incident(orjson.dumps(message))
    assert (incident.incident_id, incident.status, incident.revision, incident.kind) == (
        message["incident_id"], message["status"], message["revision"], message["kind"])
    assert (incident.trades, incident.anomalies, incident.price_move_bps) == (
        message["trades"], message["anomalies"], message["price_move_bps"])
    assert len(incident.price_path) == len(message["price_path"])
    first = message["price_path"][0]
    path = incident.price_path
    assert (path.times[0], path.prices[0], path.sizes[0], path.sides[0]) == tuple(first)
    assert list(path.prices) == [point[1] for point in message["price_path"]]
    assert incident.first_ns == time_ns(message["first_ts_event"], "") and incident.is_open == (message["status"] != "closed")


def test_an_incident_with_only_the_required_fields_still_shows(incident):
    minimal = {name: incident[name] for name in ("incident_id", "symbol", "status", "first_ts_event", "severity", "level")}
    record = decode_incident(orjson.dumps(minimal))
    assert (record.kind, record.revision, record.trades, len(record.price_path), record.summary) == ("other", 0, None, 0, "")
    assert record.last_ns == record.first_ns and record.duration_s == 0


@pytest.mark.parametrize("changes, reason", [
    ({"first_ts_event": "2999-01-01T00:00:00Z"}, "'first_ts_event' is outside 1990-2100"),
    ({"last_ts_event": 2**64 - 1}, "'last_ts_event' is outside 1990-2100"),
    ({"last_ts_event": "1999-01-01T00:00:00Z"}, "'last_ts_event' is before 'first_ts_event'"),
    ({"status": "resolved"}, "'status' must be one of open, updated, closed"),
    ({"severity": 1e308}, "'severity' is outside 0 to 1"),
    ({"peak_severity": -5}, "'peak_severity' is outside 0 to 1"),
    ({"revision": -1}, "'revision' is outside 0-"),
    ({"revision": "2"}, "'revision' is not a whole number"),
    ({"duration_s": -4.0}, "'duration_s' is outside 0 to"),
    ({"price_move_bps": 1e200}, "'price_move_bps' is outside"),
    ({"trades": 1.5}, "'trades' is not a whole number"),
    ({"direction": "sideways"}, "'direction' must be one of up, down"),
    ({"anomaly_ids": "all"}, "'anomaly_ids' is not a list of ids"),
    ({"anomaly_ids": [1, 2]}, "'anomaly_ids' is not a list of ids"),
    ({"price_path": {"0": 1}}, "'price_path' is not a list"),
    ({"price_path": [[2**64 - 1, 117.0, 100, "A"]]}, "'price_path[0].time' is outside 1990-2100"),
    ({"price_path": [[OPEN_NS, -1.0, 100, "A"]]}, "'price_path[0].price' is outside 0 to"),
    ({"price_path": [[OPEN_NS, "117", 100, "A"]]}, "'price_path[0].price' is not a number"),
    ({"price_path": [[OPEN_NS, 117.0, -100, "A"]]}, "'price_path[0].size' is not a whole number"),
    ({"price_path": [[OPEN_NS]]}, "'price_path[0]' is not [time, price, size, side]"),
    ({"price_path": [[OPEN_NS, 117.0, 1, "A"]] * 1001}, "'price_path' has 1001 points, more than 1000"),
    ({"summary": 5}, "'summary' is not text"),
])
def test_hostile_incidents_are_refused_with_the_reason(incident, changes, reason):
    with pytest.raises(InvalidRecord) as refused:
        decode_incident(encoded(incident, **changes))
    assert reason in str(refused.value)


def test_a_long_summary_is_cut_not_refused(incident):
    record = decode_incident(encoded(incident, summary="x" * 5000))
    assert record.summary == "x" * 299 + "…"


LONG_EXPLANATION = [{"input": f"input_{index}", "value": 1.0, "text": f"{index} " + "y" * 998} for index in range(20)]


def test_an_incident_of_the_largest_size_accepted_keeps_only_what_is_shown_and_bounded(incident):
    """Such an incident (1,000 ids of 200 characters, 20 lines of 1,000) used to be kept whole:
    about 300 KB, of which the never shown ``anomaly_ids`` alone were some 250 KB."""
    path = [[OPEN_NS + index, 100.0 + index, index, "AB"[index % 2]] for index in range(1000)]
    record = decode_incident(encoded(incident, anomaly_ids=["a" * 200] * 1000, peak_anomaly_id="p" * 200,
                                     explanation=LONG_EXPLANATION, summary="s" * 1000, price_path=path))
    assert not hasattr(record, "anomaly_ids") and not hasattr(record, "peak_anomaly_id")
    assert record.explanation == tuple(f"{index} " + "y" * 157 + "…" for index in range(6))
    assert len(record.summary) == 300
    kept = [round(index * 999 / 299) for index in range(300)]
    assert (len(record.price_path), kept[:3], kept[-1]) == (300, [0, 3, 7], 999)
    assert list(record.price_path.prices) == [100.0 + index for index in kept]
    assert list(record.price_path.times) == [OPEN_NS + index for index in kept]
    assert list(record.price_path.sizes) == kept and record.price_path.sides == "".join("AB"[i % 2] for i in kept)


def test_an_anomaly_of_the_largest_size_accepted_keeps_only_what_is_shown_and_bounded(anomaly):
    detectors = {f"{index}" + "d" * 199: {"score": float(index), "threshold": 1.0, "vote": True} for index in range(10)}
    record = decode_anomaly(encoded(anomaly, detectors=detectors, explanation=LONG_EXPLANATION))
    assert not hasattr(record, "votes") and not hasattr(record, "sequence")
    assert [(verdict.name, verdict.score) for verdict in record.detectors] == [
        (f"{index}" + "d" * 38 + "…", float(index)) for index in range(6)]
    assert record.explanation == tuple(f"{index} " + "y" * 157 + "…" for index in range(6))


def test_the_fields_not_kept_are_still_checked(incident, anomaly, summary):
    for decode, record, changes, reason in (
        (decode_incident, incident, {"anomaly_ids": [1]}, "'anomaly_ids' is not a list of ids"),
        (decode_incident, incident, {"max_size": -1}, "'max_size' is outside"),
        (decode_anomaly, anomaly, {"sequence": "7"}, "'sequence' is not a whole number"),
        (decode_summary, summary, {"model_generation": 1.5}, "'model_generation' is not a whole number"),
    ):
        with pytest.raises(InvalidRecord, match=reason):
            decode(encoded(record, **changes))


def test_a_contract_summary_and_an_older_one(summary):
    record = decode_summary(orjson.dumps(summary))
    assert record.has_totals
    assert (record.anomalies, record.incidents, record.anomalies_by_level, record.anomalies_by_side) == (
        summary["anomalies"], summary["incidents"], summary["anomalies_by_level"], summary["anomalies_by_side"])
    assert (record.source, record.partition, record.offset) == (summary["source"], summary["partition"], summary["offset"])
    older = {name: summary[name] for name in ("symbol", "ts_event", "last_price", "trades_processed", "anomalies",
                                               "rejected", "model_generation")}
    old_record = decode_summary(orjson.dumps(older))
    assert not old_record.has_totals and old_record.partition is None and old_record.anomalies == summary["anomalies"]


@pytest.mark.parametrize("changes, reason", [
    ({"ts_event": 2**64 - 1}, "'ts_event' is outside 1990-2100"),
    ({"ts_event": "2999-01-01T00:00:00Z"}, "'ts_event' is outside 1990-2100"),
    ({"last_price": 0.0 - 1}, "'last_price' is outside 0 to"),
    ({"last_price": "n/a"}, "'last_price' is not a number"),
    ({"anomalies": -1}, "'anomalies' is outside 0-"),
    ({"severity_max": 1e308}, "'severity_max' is outside 0 to 1"),
    ({"severity_sum": -5}, "'severity_sum' is outside 0 to"),
    ({"anomalies_by_level": [1, 2]}, "'anomalies_by_level' is not an object"),
    ({"anomalies_by_level": {"low": 1, "urgent": 2}}, "'anomalies_by_level' has an unknown key 'urgent'"),
    ({"anomalies_by_side": {"A": "7"}}, "'A' is not a whole number"),
    ({"anomalies": 10**6}, "'anomalies_by_level' adds up to"),
    ({"open_incident_level": "severe"}, "'open_incident_level' must be one of"),
    ({"partition": -1}, "'partition' is outside 0-"),
    ({"offset": 1.5}, "'offset' is not a whole number"),
    ({"symbol": ""}, "missing or empty 'symbol'"),
])
def test_hostile_summaries_are_refused_with_the_reason(summary, changes, reason):
    with pytest.raises(InvalidRecord) as refused:
        decode_summary(encoded(summary, **changes))
    assert reason in str(refused.value)


def test_a_review_round_trips_through_its_message():
    review = decode_review(orjson.dumps(REVIEW))
    assert review == Review(REVIEW["incident_id"], "dismissed", "stub quote", "Ada",
                            time_ns(REVIEW["reviewed_at"], ""), "NVDA", "block", "high")
    assert decode_review(orjson.dumps(review.to_dict())) == review
    assert review.to_dict()["reviewed_at"] == "2026-11-29T02:50:00.123456000Z"


@pytest.mark.parametrize("changes, reason", [
    ({"decision": "approved"}, "'decision' must be one of acknowledged, dismissed"),
    ({"note": "x" * 501}, "'note' is not text of at most 500 characters"),
    ({"note": ["x"]}, "'note' is not text"),
    ({"analyst": ""}, "missing or empty 'analyst'"),
    ({"analyst": "x" * 81}, "'analyst' is longer than 80 characters"),
    ({"reviewed_at": "2999-01-01T00:00:00Z"}, "'reviewed_at' is outside 1990-2100"),
    ({"incident_id": None}, "missing or empty 'incident_id'"),
    ({"level": 0.9}, "'level' must be one of"),
])
def test_hostile_reviews_are_refused_with_the_reason(changes, reason):
    with pytest.raises(InvalidRecord) as refused:
        decode_review(encoded(REVIEW, **changes))
    assert reason in str(refused.value)


def test_a_review_names_the_revision_decided_and_one_without_it_still_reads():
    with_revision = decode_review(orjson.dumps({**REVIEW, "revision": 3}))
    assert with_revision.revision == 3 and with_revision.to_dict()["revision"] == 3
    older = {key: REVIEW[key] for key in ("incident_id", "decision", "analyst", "reviewed_at")}
    assert decode_review(orjson.dumps(older)) == Review(REVIEW["incident_id"], "dismissed", "", "Ada",
                                                        time_ns(REVIEW["reviewed_at"], ""))
    newer = {**REVIEW, "revision": 3, "reviewed_revision_sha": "abc", "tags": ["x"]}  # a newer schema's extras
    assert decode_review(orjson.dumps(newer)) == with_revision
    with pytest.raises(InvalidRecord, match="revision"):
        decode_review(orjson.dumps({**REVIEW, "revision": -1}))


@pytest.mark.parametrize("name", ["\u200b", "\u202e\u2066", "\x00\x1b \t", "\ufeff\u2060"])
def test_a_review_naming_nobody_visible_is_an_invalid_record(name):
    with pytest.raises(InvalidRecord, match="'analyst' has no visible character"):
        decode_review(orjson.dumps({**REVIEW, "analyst": name}))


def test_a_review_name_is_read_without_bidi_and_control_characters():
    assert decode_review(orjson.dumps({**REVIEW, "analyst": "\u202eAda\u200b  Love\nlace\u2069"})).analyst == "Ada Love lace"
