"""The evaluate command end to end on a small synthetic tape, through the real backtest."""

import shutil

import orjson
import pytest

from benchmarks.evaluate import PRODUCT, combine, main
from benchmarks.product import write_tape
from benchmarks.report import DetectorResult
from benchmarks.scoring import EventOutcome, Score
from connectors.injection import LabelledEvent
from connectors.synthetic import generate_quiet_tape

pytest.importorskip("flows.backtest")


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    tape = write_tape(generate_quiet_tape(symbols=1, trades=6_000, seed=2), root / "quiet.trades.csv")
    assert main([str(tape), "--seed", "4", "--out", str(root / "out"), "--spacing", "1000"]) == 0
    return root / "out"


def test_writes_tables_json_and_figure(evaluated):
    names = {path.name for path in evaluated.iterdir()}
    assert {"quiet-seed4.md", "quiet-seed4.json", "quiet-seed4-SYN0.html"} <= names
    if shutil.which("chromium"):
        assert "quiet-seed4-SYN0.png" in names
    table = (evaluated / "quiet-seed4.md").read_text()
    assert table.count("\n| ") >= 4 and PRODUCT in table and "rolling z-score" in table


def test_the_reported_numbers_follow_from_the_reported_events(evaluated):
    report = orjson.loads((evaluated / "quiet-seed4.json").read_bytes())
    assert [d["name"] for d in report["detectors"]][0] == PRODUCT and len(report["detectors"]) == 5
    for detector in report["detectors"]:
        details = detector["events_detail"]
        assert len(details) == detector["events"] == 4  # (6,000 - 1,500 warm-up) // 1,000
        found = sum(d["found"] for d in details)
        assert detector["found"] == found
        assert detector["recall"] == pytest.approx(found / 4)
        alarms = found + detector["false_alarms"]
        assert detector["precision"] == pytest.approx(found / alarms if alarms else 0.0)
        assert detector["trades"] == 6_000 + sum(d["trade_count"] for d in details if d["kind"] != "flash_crash")


def test_the_product_false_alarms_are_listed_with_their_trade(evaluated):
    report = orjson.loads((evaluated / "quiet-seed4.json").read_bytes())
    listed = report["product_false_alarms"]
    assert len(listed) == report["detectors"][0]["false_alarms"]
    assert all(set(alarm) == {"symbol", "sequence", "ts_event", "side", "price", "size", "flags"} for alarm in listed)


def test_combining_files_adds_counts_and_recomputes_ratios():
    event = LabelledEvent("block", "X", 1, 1, 1, "2025-05-09T15:00:00.000000000Z", "")
    first = DetectorResult("d", Score(100_000, [EventOutcome(event, True, 0, 5)], 3), 10, 2.0)
    second = DetectorResult("d", Score(300_000, [EventOutcome(event, False, None, 5)], 1), 30, 2.0)
    (combined,) = combine([[first], [second]])
    assert combined.score.trades == 400_000 and combined.score.false_alarms == 4
    assert combined.score.recall == 0.5 and combined.score.false_alarms_per_100k == 1.0
    assert combined.score.precision == pytest.approx(1 / 5)
    assert combined.flagged == 40 and combined.trades_per_second == 100_000
