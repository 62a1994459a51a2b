"""The demo advertises only ports it checked: a taken default is replaced, a taken explicit one is named."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.broker import port_is_free
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
