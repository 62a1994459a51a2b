"""The detectors a user would otherwise pick, run on the same injected tape as the product.

Each peer takes one symbol's trades (in order) and returns a boolean flag per
trade. They are deliberately the plain, published designs, not tuned versions:
the point of the table is what a user gets from the obvious alternative.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.peers.half_space_trees import flag_half_space_trees
from benchmarks.peers.rolling_zscore import flag_rolling_zscore
from benchmarks.peers.seed_design import flag_seed_design, flag_seed_design_causal

PEERS: dict[str, Callable[[list[dict[str, Any]], int], np.ndarray]] = {
    "seed design (IF+EE+z, 18 raw features)": flag_seed_design,
    "seed design, causal (fit on previous 500)": flag_seed_design_causal,
    "River HalfSpaceTrees (Bytewax example)": flag_half_space_trees,
    "rolling z-score (4 sigma, either side)": flag_rolling_zscore,
}
