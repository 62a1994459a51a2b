"""docker-compose.yml is valid compose (checked by the compose CLI when one is installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def compose_command() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(
        ["docker", "compose", "version"], capture_output=True
    ).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_file_is_valid():
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    checked = subprocess.run([*command, "config", "-q"], cwd=REPO, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_every_service_of_the_product_is_there():
    text = (REPO / "docker-compose.yml").read_text()
    for service in ("redpanda:", "console:", "topics:", "job:", "replay:", "dashboard:"):
        assert f"\n  {service}" in text
