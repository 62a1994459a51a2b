"""The detect-step benchmark's records: the same whatever the input batches."""

import pytest

from benchmarks.detect_step import market_messages, measure
from models.config import DetectorConfig


@pytest.fixture(scope="module")
def market():
    return market_messages(50, 30_000)


def test_the_records_do_not_depend_on_the_batch_size(market):
    config = DetectorConfig(background_training=False)
    large, small = measure(market, 5_000, config), measure(market, 777, config)
    assert large["anomalies"] > 0 and large["incident_updates"] > 0
    assert (small["anomalies"], small["incident_updates"]) == (large["anomalies"], large["incident_updates"])
    assert small["records_sha256"] == large["records_sha256"]
    assert small["instrument_batches"] > large["instrument_batches"] >= 50
    assert large["detect_cpu_us_per_trade"] > 0
