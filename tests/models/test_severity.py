from __future__ import annotations

import pytest

from models.severity import level, severity


@pytest.mark.parametrize(
    "value, expected",
    [(0.0, "low"), (0.4, "low"), (0.4000001, "medium"), (0.6, "medium"), (0.6000001, "high"),
     (0.8, "high"), (0.8000001, "critical"), (1.0, "critical")],
)
def test_levels_at_their_boundaries(value, expected):
    assert level(value) == expected


@pytest.mark.parametrize(
    "inputs, expected",
    [
        ((0.0, 0.0, 0.0, 0.0), 0.0),
        ((1.0, 1.0, 10.0, 10.0), 1.0),
        ((1.0, 0.0, 0.0, 0.0), 0.40),
        ((0.0, 1.0, 0.0, 0.0), 0.20),
        ((0.0, 0.0, 10.0, 0.0), 0.25),
        ((0.0, 0.0, 0.0, -10.0), 0.15),
        ((0.0, 0.0, 25.0, 99.0), 0.40),  # z-scores beyond the cap count fully, no more
        ((0.5, 2 / 3, 5.0, -5.0), 0.2 + 0.2 * 2 / 3 + 0.125 + 0.075),
    ],
)
def test_severity_weights_and_normalisation(inputs, expected):
    assert float(severity(*inputs)) == pytest.approx(expected)
