"""The evaluate command end to end on a small synthetic tape, through the real backtest."""

import shutil

import orjson
import pytest

from benchmarks import evaluate, product, second_injector
from benchmarks.evaluate import PRODUCT, day_configs, main, resolve_days
from benchmarks.product import incidents_path, write_tape
from benchmarks.report import DetectorResult
from benchmarks.scoring import EventOutcome, Score
from benchmarks.summary import combined
from connectors.injection import LabelledEvent
from connectors.synthetic import generate_quiet_tape
from flows.backtest import run_backtest


@pytest.fixture(scope="module")
def tape_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    return write_tape(generate_quiet_tape(symbols=1, trades=6_000, seed=2), root / "quiet.trades.csv")


@pytest.fixture(scope="module")
def evaluated(tape_file):
    out = tape_file.parent / "out"
    config = tape_file.parent / "configs.json"
    config.write_bytes(orjson.dumps({"quiet": {"DETECTOR_FOREST_THRESHOLD": "0.6"}}))
    assert main([str(tape_file), "--seeds", "4", "--out", str(out), "--spacing", "1000", "--early-close",
                 "--config-per-day", str(config)]) == 0
    return out


def test_writes_run_tables_json_figure_and_summary(evaluated):
    names = {path.name for path in evaluated.iterdir()}
    assert {"quiet-seed4.md", "quiet-seed4.json", "quiet-seed4-SYN0.html", "quiet-early-close-seed4.md",
            "summary.md", "summary.json"} <= names
    if shutil.which("chromium"):
        assert "quiet-seed4-SYN0.png" in names
    table = (evaluated / "quiet-seed4.md").read_text()
    assert table.count("\n| ") >= 4 and PRODUCT in table and "rolling z-score" in table


def test_the_reported_numbers_follow_from_the_reported_events(evaluated):
    report = orjson.loads((evaluated / "quiet-seed4.json").read_bytes())
    assert [d["name"] for d in report["detectors"]][0] == PRODUCT and len(report["detectors"]) == 5
    for detector in report["detectors"]:
        details = detector["events_detail"]
        assert len(details) == detector["events"] >= 4  # 4 slots of 1,000 after the warm-up, some with a pair
        found = sum(d["found"] for d in details)
        assert detector["found"] == found
        assert detector["recall"] == pytest.approx(found / len(details))
        alarms = found + detector["false_alarms"]
        assert detector["precision"] == pytest.approx(found / alarms if alarms else 0.0)
        assert detector["trades"] == 6_000 + sum(d["trade_count"] for d in details if d["kind"] != "flash_crash")


def test_each_run_records_the_configuration_it_used(evaluated):
    report = orjson.loads((evaluated / "quiet-seed4.json").read_bytes())
    assert report["config"]["forest_threshold"] == 0.6
    assert report["config_label"] == "DETECTOR_FOREST_THRESHOLD=0.6"
    assert "| quiet | DETECTOR_FOREST_THRESHOLD=0.6 |" in (evaluated / "summary.md").read_text()


def test_the_early_close_cut_is_declared_an_early_close_to_the_engine(evaluated):
    full = orjson.loads((evaluated / "quiet-seed4.json").read_bytes())
    cut = orjson.loads((evaluated / "quiet-early-close-seed4.json").read_bytes())
    added = sorted(set(cut["config"]["early_close_days"]) - set(full["config"]["early_close_days"]))
    assert len(added) == 1 and cut["config_label"] == f"DETECTOR_FOREST_THRESHOLD=0.6; {added[0]} declared an early close"
    assert cut["config"]["forest_threshold"] == 0.6


def test_the_product_false_alarms_are_listed_with_their_trade_and_hour(evaluated):
    report = orjson.loads((evaluated / "quiet-seed4.json").read_bytes())
    listed = report["product_false_alarms"]
    assert len(listed) == report["detectors"][0]["false_alarms"]
    assert sum(report["false_alarms_by_new_york_hour"].values()) == len(listed)
    assert sum(report["trades_by_new_york_hour"].values()) == report["detectors"][0]["trades"]
    assert all(
        set(alarm) == {"symbol", "sequence", "ts_event", "side", "price", "size", "flags", "new_york_hour"}
        for alarm in listed
    )


def test_the_summary_has_a_row_per_run_and_the_incidents_the_backtest_wrote(evaluated):
    summary = (evaluated / "summary.md").read_text()
    assert "| quiet | 4 |" in summary and "| quiet-early-close | 4 |" in summary
    assert "**all full days**" in summary and "**all early-close**" in summary
    assert "False alarms of the product by hour of the day (New York)" in summary
    assert "| 10:00-11:00 |" in summary
    assert "No incidents file" not in summary
    runs = orjson.loads((evaluated / "summary.json").read_bytes())["runs"]
    assert [(r["tape"], r["seed"]) for r in runs] == [("quiet", 4), ("quiet-early-close", 4)]
    assert all(r["incidents"] is not None for r in runs)


def test_the_second_injector_runs_under_its_own_name(tape_file, tmp_path):
    assert main([str(tape_file), "--seeds", "4", "--out", str(tmp_path), "--injector", "second", "--no-peers",
                 "--no-figures"]) == 0
    report = orjson.loads((tmp_path / "quiet-second-seed4.json").read_bytes())
    assert report["injector"] == "second" and report["tape"] == "quiet-second"
    details = report["detectors"][0]["events_detail"]
    assert details and {d["kind"] for d in details} <= set(second_injector.KINDS)
    assert "| quiet-second | 4 |" in (tmp_path / "summary.md").read_text()


@pytest.mark.parametrize("injector, variant, close", [
    ("broad", "full", "16:00:00"), ("second", "early-close", "13:00:00"), ("third", "full", "16:00:00"),
    ("third", "early-close", "13:00:00"),
])
def test_each_injector_is_called_with_the_runs_seed_and_close(monkeypatch, injector, variant, close):
    calls = []
    for name in ("inject_events", "inject_second", "inject_third"):
        monkeypatch.setattr(evaluate, name, lambda tape, seed, *, name=name, session_close, **_: (
            calls.append((name, seed, session_close.isoformat())) or (tape, [])))
    spec = evaluate.RunSpec("day", variant, 3, None, "defaults", False, injector=injector)
    assert evaluate.inject([], spec) == ([], [])
    expected = {"broad": "inject_events", "second": "inject_second", "third": "inject_third"}[injector]
    assert calls == [(expected, 3, close)]


def test_an_unknown_injector_is_an_error():
    with pytest.raises(ValueError, match="unknown injector 'fourth'"):
        evaluate.inject([], evaluate.RunSpec("day", "full", 0, None, "defaults", False, injector="fourth"))


def test_incidents_written_beside_the_anomalies_are_scored(tape_file, tmp_path, monkeypatch):
    """The backtest's incidents replaced by hand-built ones, one per anomaly, whose scores are known."""

    def backtest_with_incidents(paths, out, config, incidents=None):
        report = run_backtest(paths, out, config, incidents=incidents)
        lines = []
        for line in report.anomalies_path.read_bytes().splitlines():
            record = orjson.loads(line)
            lines.append(orjson.dumps({
                "incident_id": f"INC-{record['anomaly_id']}", "symbol": record["symbol"], "kind": "other",
                "direction": None, "first_sequence": record["sequence"], "last_sequence": record["sequence"],
                "level": record["level"],
            }))
        incidents_path(report.anomalies_path).write_bytes(b"\n".join(lines) + b"\n")
        return report

    monkeypatch.setattr(product, "run_backtest", backtest_with_incidents)
    assert main([str(tape_file), "--seeds", "4", "--out", str(tmp_path), "--spacing", "1000", "--no-peers",
                 "--no-figures"]) == 0
    report = orjson.loads((tmp_path / "quiet-seed4.json").read_bytes())
    incidents, product_row = report["incidents"], report["detectors"][0]
    # One incident per anomaly: every found event is covered; an event whose only anomaly lies on
    # the next event's trades is covered without being found.
    assert product_row["found"] <= incidents["covered"] <= product_row["events"] == incidents["events"]
    assert incidents["kind_right"] == 0.0  # "other" is never the expected kind
    records = product_row["flagged"] + report["auction_records"]
    assert sum(incidents["true_levels"].values()) + sum(incidents["false_levels"].values()) == records
    assert product_row["false_alarms"] <= incidents["false_incidents"] <= records
    summary = (tmp_path / "summary.md").read_text()
    assert "No incidents file" not in summary and "*target*" in summary and ">= 0.97" in summary


def test_combining_runs_adds_counts_and_recomputes_ratios():
    event = LabelledEvent("block", "X", 1, 1, 1, "2025-05-09T15:00:00.000000000Z", "")
    first = DetectorResult("d", Score(100_000, [EventOutcome(event, True, 0, 5)], 3), 10, 2.0)
    second = DetectorResult("d", Score(300_000, [EventOutcome(event, False, None, 5)], 1), 30, 2.0)
    total = combined([first, second])
    assert total.score.trades == 400_000 and total.score.false_alarms == 4
    assert total.score.recall == 0.5 and total.score.false_alarms_per_100k == 1.0
    assert total.score.precision == pytest.approx(1 / 5)
    assert total.flagged == 40 and total.trades_per_second == 100_000


@pytest.mark.parametrize("content, message", [
    ({"other-day": {"DETECTOR_SEED": "1"}}, "not evaluated"),
    ({"quiet": {"DETECTOR_FOREST_THRESHOLD": "high"}}, "DETECTOR_FOREST_THRESHOLD"),
    ({"quiet": {"FOREST_THRESHOLD": "0.6"}}, "not DETECTOR_"),
    ({"quiet": {"DETECTOR_FOREST_TRESHOLD": "0.6"}}, "DETECTOR_FOREST_TRESHOLD: no such setting"),
    ({"quiet": {"DETECTOR_INCIDENT_QUIET_TRADES": "abc"}}, "DETECTOR_INCIDENT_QUIET_TRADES"),
    ({"quiet": ["DETECTOR_SEED"]}, "must map"),
])
def test_a_bad_per_day_configuration_stops_before_any_run(tmp_path, content, message):
    path = tmp_path / "configs.json"
    path.write_bytes(orjson.dumps(content))
    with pytest.raises(SystemExit, match=message):
        day_configs(path, ["quiet"])


@pytest.mark.parametrize("content, message", [(b"{not json", "--config-per-day .*configs.json: "), (None, "No such file")])
def test_a_per_day_configuration_that_cannot_be_read_is_one_line(tmp_path, content, message):
    path = tmp_path / "configs.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SystemExit, match=message):
        day_configs(path, ["quiet"])


@pytest.mark.parametrize("arguments, message", [
    (["--seeds", "-1"], "argument --seeds/--seed: must be a whole number from 0 to 4,294,967,295"),
    (["--seeds", "0", "0"], "--seeds: each seed once"),
    (["--spacing", "0"], "argument --spacing: must be a whole number from 1"),
    (["--days", "all", "nope"], "--days all takes no other names"),
])
def test_bad_arguments_are_refused_naming_the_option(tape_file, tmp_path, capsys, arguments, message):
    with pytest.raises(SystemExit) as stop:
        main([str(tape_file), "--out", str(tmp_path), *arguments])
    assert stop.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("case, message", [
    ("missing", "error: not a file: "),
    ("twice", "error: a day is given twice"),
    ("unsupported", "not a trades file"),
    ("out is a file", "error: "),
    ("empty", "no trades with a symbol"),
    ("another schema", "day.csv is not a Databento trades CSV: its first line is not a header"),
])
def test_a_bad_file_or_result_directory_stops_before_any_run_with_one_line(tape_file, tmp_path, case, message):
    """Before, each was a traceback, some only after the runs of the days before it."""
    files, out = [str(tape_file)], tmp_path / "out"
    if case == "missing":
        files.append(str(tmp_path / "nope.csv"))
    elif case == "twice":
        files.append(str(tape_file))
    elif case == "unsupported":
        (tmp_path / "day.parquet").write_bytes(b"x")
        files.append(str(tmp_path / "day.parquet"))
    elif case == "out is a file":
        out.write_text("")
    else:
        files = [str(tmp_path / "day.csv")]
        (tmp_path / "day.csv").write_text("" if case == "empty" else "ts,bid,ask\n1,2,3\n")
    with pytest.raises(SystemExit, match=message) as stop:
        main([*files, "--out", str(out), "--no-peers", "--no-figures"])
    assert isinstance(stop.value.code, str) and stop.value.code.startswith("error: ")


def test_a_per_day_configuration_sets_the_engine_and_the_incident_tracker(tmp_path):
    path = tmp_path / "configs.json"
    path.write_bytes(orjson.dumps({"quiet": {"DETECTOR_FOREST_THRESHOLD": "0.6",
                                             "DETECTOR_INCIDENT_QUIET_TRADES": "50"}}))
    configs = day_configs(path, ["quiet", "busy"])
    config, incidents, label = configs["quiet"]
    assert (config.forest_threshold, incidents.quiet_trades) == (0.6, 50)
    assert label == "DETECTOR_FOREST_THRESHOLD=0.6, DETECTOR_INCIDENT_QUIET_TRADES=50"
    config, incidents, label = configs["busy"]
    assert (config.forest_threshold, incidents.quiet_trades, label) == (0.58, 200, "defaults")


def test_days_are_found_by_all_by_stem_or_by_date(tmp_path):
    for name in ("xnas-itch-20250509.trades.csv.zst", "xnas-itch-20240923.trades.csv.zst", "test_data.trades.dbn.zst"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in resolve_days([], ["all"], tmp_path)] == [
        "xnas-itch-20240923.trades.csv.zst", "xnas-itch-20250509.trades.csv.zst"]
    assert [p.name for p in resolve_days([], ["20250509"], tmp_path)] == ["xnas-itch-20250509.trades.csv.zst"]
    assert [p.name for p in resolve_days([], ["2025-05-09"], tmp_path)] == ["xnas-itch-20250509.trades.csv.zst"]
    assert resolve_days([], ["xnas-itch-20240923"], tmp_path)[0].name.startswith("xnas-itch-20240923")
    with pytest.raises(SystemExit, match="matches 0 files"):
        resolve_days([], ["20990101"], tmp_path)
    with pytest.raises(SystemExit, match="matches 2 files"):
        resolve_days([], ["xnas"], tmp_path)


@pytest.mark.parametrize("injector", ["second", "third"])
@pytest.mark.parametrize("option", [["--spacing", "1000"], ["--kinds", "block"]])
def test_the_broad_injectors_options_are_refused_with_another(injector, option, capsys):
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--days", "all", "--injector", injector, *option])
    assert "shape the broad injector's events" in capsys.readouterr().err
    args = evaluate.parse_args(["--days", "all", "--injector", injector])
    assert (args.spacing, args.kinds) == (evaluate.DEFAULT_SPACING, list(evaluate.EVENT_KINDS))


def test_early_close_variant_names_and_no_arguments_is_an_error():
    with pytest.raises(SystemExit):
        evaluate.parse_args([])
    assert evaluate.parse_args(["--days", "all", "--early-close"]).early_close == "also"
    assert evaluate.parse_args(["--days", "all", "--early-close", "only"]).early_close == "only"
