"""The demo advertises only ports it checked: a taken default is replaced, a taken explicit one is named."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from connectors.broker import free_port, port_is_free
from connectors.demo import DemoSettings, DemoSettingsError

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def taken_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize("field, variable", [("dashboard_port", "DEMO_DASHBOARD_PORT"),
                                             ("metrics_port", "DEMO_METRICS_PORT"),
                                             ("broker_port", "DEMO_BROKER_PORT")])
def test_a_taken_default_port_is_replaced_by_a_free_one(taken_port, field, variable):
    settings = DemoSettings(**{field: taken_port}).with_free_ports({})
    assert getattr(settings, field) != taken_port and port_is_free(getattr(settings, field))


@pytest.mark.parametrize("variable", ["DEMO_DASHBOARD_PORT", "DEMO_METRICS_PORT", "DEMO_BROKER_PORT"])
def test_a_taken_port_given_explicitly_is_named(taken_port, variable):
    environ = {variable: str(taken_port)}
    with pytest.raises(DemoSettingsError, match=f"{variable}={taken_port} is in use"):
        DemoSettings.from_env(environ).with_free_ports(environ)


def test_the_demo_stops_at_start_naming_a_taken_dashboard_port(taken_port):
    finished = subprocess.run(
        [sys.executable, "-m", "connectors.demo"], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "DEMO_DASHBOARD_PORT": str(taken_port)},
    )
    assert finished.returncode == 2
    assert finished.stderr.strip() == (f"connectors.demo: DEMO_DASHBOARD_PORT={taken_port} is in use; "
                                       "choose a free port or unset DEMO_DASHBOARD_PORT")


@pytest.mark.parametrize("environ, message", [
    ({"DEMO_SPEED": "0.0001"}, "DEMO_SPEED='0.0001' must be from 0.001 to 1,000,000"),
    ({"DEMO_SYMBOLS": "20000"}, "DEMO_SYMBOLS='20000' must be from 1 to 10,000"),
    ({"DEMO_TRADES": "2000000"}, "DEMO_TRADES='2000000' must be from 1 to 1,000,000"),
    ({"DEMO_SYMBOLS": "50", "DEMO_TRADES": "10"}, "DEMO_TRADES=10 must be at least DEMO_SYMBOLS=50"),
])
def test_a_value_the_replay_would_refuse_is_named_as_the_demos_variable(environ, message):
    """The demo once started with these and said only that its replay exited with status 2."""
    with pytest.raises(DemoSettingsError) as error:
        DemoSettings.from_env(environ)
    assert message in str(error.value)


@pytest.mark.parametrize("kind, says", [
    ("directory", "not a file"),
    ("fifo", "not a file"),
    ("missing", "not a file"),
    ("parquet", "not a trades file (.csv, .csv.zst, .dbn, .dbn.zst)"),
])
def test_a_demo_file_the_replay_would_refuse_stops_the_demo_at_start_naming_it(tmp_path, kind, says):
    """A directory or an unsupported file passed the demo's check; the replay refused it once the broker,
    the job and the dashboard ran, and the demo stopped them all saying only 'the replay exited with status 2'."""
    path = tmp_path / ("day.parquet" if kind == "parquet" else "day.csv")
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "parquet":
        path.write_bytes(b"PAR1")
    with pytest.raises(DemoSettingsError) as error:
        DemoSettings.from_env({"DEMO_FILE": str(path)})
    assert str(error.value) == f"DEMO_FILE={str(path)!r} cannot be replayed: {says}: {path}"
    finished = subprocess.run(  # stops before the broker starts
        [sys.executable, "-m", "connectors.demo"], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "DEMO_FILE": str(path)},
    )
    assert (finished.returncode, finished.stdout) == (2, "")
    assert finished.stderr == f"connectors.demo: {error.value}\n"


def cut_csv_zst(path: Path, trades: int) -> int:
    """A day of ``trades`` NVDA trades as a .csv.zst whose last zstd frame is cut short; the trades
    readable before the cut."""
    import zstandard

    from connectors.csv_trades import TruncatedFile
    from connectors.files import iter_trade_chunks

    opening = REPO / "tests" / "fixtures" / "nvda-20250509-open.csv.zst"
    with zstandard.ZstdDecompressor().stream_reader(opening.open("rb")) as stream:
        text = b"\n".join(stream.read().splitlines()[:trades + 1]) + b"\n"
    compressor = zstandard.ZstdCompressor(write_content_size=False)
    frames = [compressor.compress(text[start:start + 16_384]) for start in range(0, len(text), 16_384)]
    path.write_bytes(b"".join(frames)[:-10])
    readable = 0
    with pytest.raises(TruncatedFile):
        for chunk in iter_trade_chunks(path):
            readable += len(chunk)
    return readable


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout} s: {what}")


def fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.read().decode()
    except OSError:
        return None


def trades_read(metrics_port: int) -> int | None:
    page = fetch(f"http://127.0.0.1:{metrics_port}/metrics") or ""
    for line in page.splitlines():
        if line.startswith("trade_detector_trades_read_total "):
            return int(float(line.split()[1]))
    return None


def test_a_replay_that_fails_says_so_and_leaves_the_job_and_the_dashboard_up_with_what_it_published(tmp_path):
    """A replay ending with status 4 (a file cut short) stopped the job and the dashboard with it: the demo
    exited 1 ('the replay exited with status 4; stopping') and the trades it had published could not be seen."""
    path = tmp_path / "day.csv.zst"
    published = cut_csv_zst(path, 2_000)
    assert 1_000 < published < 2_000
    ports = {name: str(free_port()) for name in ("DEMO_BROKER_PORT", "DEMO_DASHBOARD_PORT", "DEMO_METRICS_PORT")}
    stderr = tmp_path / "demo.stderr"
    with stderr.open("wb") as sink:
        demo = subprocess.Popen(
            [sys.executable, "-m", "connectors.demo"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=sink,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path),
                 "DEMO_FILE": str(path), "DEMO_SPEED": "1000000", **ports})
    try:
        failed = ("connectors.demo: the replay failed with status 4 (its file could not be read to its end; its own "
                  "line above says more); the job and the dashboard keep running with the trades it published "
                  "(Ctrl-C stops)")
        wait_for(lambda: failed in stderr.read_text() or demo.poll() is not None, 120, "the replay's end")
        log = stderr.read_text()
        assert failed in log and demo.poll() is None, log
        assert (f"connectors.replay: day.csv.zst cannot be read after its first {published:,} trades: TruncatedFile: "
                "day.csv.zst ends inside a zstd frame: the file was cut") in log
        assert wait_for(lambda: trades_read(int(ports["DEMO_METRICS_PORT"])) == published, 120,
                        f"the job reading the {published} trades published")
        assert wait_for(lambda: fetch(f"http://127.0.0.1:{ports['DEMO_DASHBOARD_PORT']}/_stcore/health"), 60,
                        "the dashboard answering") == "ok"
        time.sleep(1)
        assert demo.poll() is None  # still up
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(60) == 0
        assert f"flows.main: stopped by SIGTERM after {published:,} trades" in stderr.read_text()
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)
            demo.wait(60)
