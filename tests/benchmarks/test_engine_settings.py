"""The benchmarks that read the engine's settings refuse a misspelled ``DETECTOR_*`` variable, as the
job, the backtest and ``benchmarks.evaluate`` do: a measurement of the defaults under a name the
operator believes set would be read as a measurement of that setting."""

from __future__ import annotations

import pytest

from benchmarks import backtest_speed, engine_calls


@pytest.mark.parametrize("benchmark", [backtest_speed, engine_calls], ids=["backtest_speed", "engine_calls"])
def test_a_misspelled_detector_setting_stops_the_benchmark_naming_it(benchmark, monkeypatch, tmp_path):
    """A missing input file: were the setting not refused first, the benchmark would stop at the file
    (status 2) rather than run, and the test fail quickly."""
    monkeypatch.setenv("DETECTOR_FOREST_TRESHOLD", "0.6")
    with pytest.raises(SystemExit, match="^error: DETECTOR_FOREST_TRESHOLD: no such setting") as stop:
        benchmark.main([str(tmp_path / "missing.trades.csv.zst"), "--out", str(tmp_path / "out")])
    assert isinstance(stop.value.code, str)
    assert not (tmp_path / "out").exists()
