"""Speed and detection-quality measurements, on top of every other package."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED_NVDA = REPO.parent / "shared" / "data" / "nvda"
"""The shared real NASDAQ NVDA trade days, beside the checkout (``../shared/data/nvda``)."""
OUTPUT = REPO / "out"
"""Where measuring commands write by default (not committed); ``--out benchmarks/results`` to record."""
