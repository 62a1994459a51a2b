"""``python -m connectors.demo`` (``make demo``): the whole product on one machine, no Docker.

Starts, in order: the embedded Kafka-API broker, the streaming job, a replay of the
synthetic tape (or of ``DEMO_FILE``), and the Streamlit dashboard; prints where
to look; and on Ctrl-C stops them in reverse order. Each child runs in its own
process group so stopping one also stops the helpers it started.

Settings (environment): ``DEMO_BROKER_PORT`` (9092), ``DEMO_FILE`` (a Databento
trades file instead of the synthetic tape), ``DEMO_SPEED`` (replay speed, default
10), ``DEMO_SYMBOLS`` (5), ``DEMO_TRADES`` (40000), ``DEMO_DASHBOARD_PORT`` (8501),
``DEMO_METRICS_PORT`` (3030). A default port that is taken is replaced by a free
one; a port given explicitly and taken stops the demo with a line naming its
variable. Only ports checked free are advertised. ``DEMO_FILE`` is checked as the replay
checks its files (a file, of a supported type) before anything starts.

The replay ending, however it ends, stops nothing: a replay that fails (a file that cannot be
read to its end, status 4) has its own line say why, the demo says it failed, and the job and
the dashboard keep running with what it published until Ctrl-C. The job or the dashboard
ending stops the demo.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from connectors.broker import EmbeddedBroker, free_port, port_is_free
from connectors.files import unusable_files
from connectors.kafka import ensure_topics
from connectors.replay import MAX_SPEED, MAX_SYMBOLS, MAX_SYNTHETIC_TRADES, MIN_SPEED, shown_number
from models.config import parse_number

REPO = Path(__file__).resolve().parent.parent
TOPIC_PARTITIONS = 3


class DemoSettingsError(ValueError):
    pass


PORT_VARIABLES = {"broker_port": "DEMO_BROKER_PORT", "dashboard_port": "DEMO_DASHBOARD_PORT",
                  "metrics_port": "DEMO_METRICS_PORT"}


@dataclass(frozen=True)
class DemoSettings:
    broker_port: int = 9092
    file: str | None = None
    speed: float = 10.0
    symbols: int = 5
    trades: int = 40_000
    dashboard_port: int = 8501
    metrics_port: int = 3030

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> DemoSettings:
        def number(name: str, default, kind, minimum: float = 0.0, maximum: float = math.inf):
            text = environ.get(name)
            if text is None:
                return default
            try:
                value = parse_number(text, kind)
            except ValueError:
                raise DemoSettingsError(f"{name}={text!r} is not a valid {kind.__name__}") from None
            if value <= 0:
                raise DemoSettingsError(f"{name}={text!r} must be positive")
            if not minimum <= value <= maximum:  # the replay's own bounds, named here rather than as its options
                raise DemoSettingsError(f"{name}={text!r} must be from {shown_number(minimum)} to {shown_number(maximum)}")
            return value

        file = environ.get("DEMO_FILE") or None
        refused = unusable_files([file]) if file is not None else None  # the replay's own check of its inputs
        if refused:  # a directory or a .parquet passed here, and the replay refused it once everything ran
            raise DemoSettingsError(f"DEMO_FILE={file!r} cannot be replayed: {refused}")
        settings = cls(
            broker_port=number("DEMO_BROKER_PORT", cls.broker_port, int),
            file=file,
            speed=number("DEMO_SPEED", cls.speed, float, MIN_SPEED, MAX_SPEED),
            symbols=number("DEMO_SYMBOLS", cls.symbols, int, 1, MAX_SYMBOLS),
            trades=number("DEMO_TRADES", cls.trades, int, 1, MAX_SYNTHETIC_TRADES),
            dashboard_port=number("DEMO_DASHBOARD_PORT", cls.dashboard_port, int),
            metrics_port=number("DEMO_METRICS_PORT", cls.metrics_port, int),
        )
        if file is None and settings.trades < settings.symbols:
            raise DemoSettingsError(f"DEMO_TRADES={settings.trades} must be at least DEMO_SYMBOLS={settings.symbols}: "
                                    "one trade per symbol")
        return settings

    def with_free_ports(self, environ: Mapping[str, str]) -> DemoSettings:
        """Each port as given if free; a taken default becomes a free port; a taken explicit one is an error."""
        chosen = {}
        for field_name, variable in PORT_VARIABLES.items():
            port = getattr(self, field_name)
            if port > 65535:
                raise DemoSettingsError(f"{variable}={port} is not a port (1-65535)")
            if port_is_free(port):
                chosen[field_name] = port
            elif variable in environ:
                raise DemoSettingsError(f"{variable}={port} is in use; choose a free port or unset {variable}")
            else:
                chosen[field_name] = free_port()
        return replace(self, **chosen)


def start(command: list[str], env: Mapping[str, str]) -> subprocess.Popen:
    return subprocess.Popen(command, env=dict(env), cwd=REPO, start_new_session=True)


def stop(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM to the child's process group, SIGKILL after ``grace``.

    Not SIGINT: a demo started in the background inherits SIGINT ignored, and so do its children.
    """
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass
    try:  # helpers the child left behind
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def replay_command(settings: DemoSettings) -> list[str]:
    command = [sys.executable, "-m", "connectors.replay", "--speed", str(settings.speed),
               "--partitions", str(TOPIC_PARTITIONS)]
    if settings.file:
        return [*command, settings.file]
    return [*command, "--synthetic", "--symbols", str(settings.symbols), "--trades", str(settings.trades)]


def main() -> int:
    try:
        settings = DemoSettings.from_env(os.environ).with_free_ports(os.environ)
    except DemoSettingsError as error:
        print(f"connectors.demo: {error}", file=sys.stderr)
        return 2
    port = settings.broker_port
    children: list[tuple[str, subprocess.Popen]] = []
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    with EmbeddedBroker(port) as broker:
        env = {
            **os.environ, "PYTHONPATH": str(REPO), "KAFKA_BROKERS": broker.bootstrap,
            "BYTEWAX_DATAFLOW_API_ENABLED": "true", "BYTEWAX_DATAFLOW_API_PORT": str(settings.metrics_port),
            "ANOMALY_TOPIC": os.environ.get("OUTPUT_TOPIC", "anomalies"),
        }
        ensure_topics(broker.bootstrap, {env.get("INPUT_TOPIC", "stocks"): TOPIC_PARTITIONS})
        try:
            children.append(("job", start([sys.executable, "-m", "bytewax.run", "flows.main"], env)))
            children.append(("replay", start(replay_command(settings), env)))
            children.append(("dashboard", start(
                [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
                 "--server.port", str(settings.dashboard_port)], env)))
            print(
                f"\nbroker     {broker.bootstrap} (Tansu, in memory)\n"
                f"dashboard  http://localhost:{settings.dashboard_port}\n"
                f"metrics    http://localhost:{settings.metrics_port}/metrics\n"
                f"replay     {settings.file or f'synthetic tape, {settings.symbols} symbols'} at {settings.speed:g}x\n"
                "Ctrl-C stops everything.\n", flush=True,
            )
            return watch(children)
        except KeyboardInterrupt:
            print("\nstopping ...", file=sys.stderr)
            return 0
        finally:
            for _name, process in reversed(children):
                stop(process)


def _interrupt(*_args) -> None:
    """SIGTERM (docker stop, kill) stops the demo the way Ctrl-C does."""
    raise KeyboardInterrupt


def watch(children: list[tuple[str, subprocess.Popen]]) -> int:
    """Run until Ctrl-C; the replay may end, the job and the dashboard may not."""
    reported = set()
    while True:
        for name, process in children:
            code = process.poll()
            if code is None or name in reported:
                continue
            reported.add(name)
            if name == "replay":
                print(replay_ended(code), file=sys.stderr if code else sys.stdout, flush=True)
            else:
                print(f"connectors.demo: the {name} exited with status {code}; stopping", file=sys.stderr)
                return 1
        time.sleep(0.5)


REPLAY_FAILURES = {
    1: "some trades were not delivered",
    2: "it could not start",
    3: "it lost the broker",
    4: "its file could not be read to its end",
}
"""The replay's exit statuses (``connectors.replay``), as the demo tells them."""


def replay_ended(code: int) -> str:
    """What the demo says when the replay ends. A failed replay used to stop the job and the dashboard
    with it (``the replay exited with status 4; stopping``), taking away the trades it had published."""
    if code == 0:
        return "replay finished; the job and the dashboard keep running (Ctrl-C stops)"
    why = REPLAY_FAILURES.get(code, f"ended by signal {-code}" if code < 0 else "an unexpected status")
    return (f"connectors.demo: the replay failed with status {code} ({why}; its own line above says more); "
            "the job and the dashboard keep running with the trades it published (Ctrl-C stops)")


if __name__ == "__main__":
    sys.exit(main())
