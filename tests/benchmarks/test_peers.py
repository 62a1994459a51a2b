"""The peers flag what their published design says they flag, deterministically."""

import numpy as np
import pytest

from benchmarks.peers import PEERS
from benchmarks.peers.half_space_trees import flag_half_space_trees
from benchmarks.peers.rolling_zscore import flag_rolling_zscore
from benchmarks.peers.seed_design import flag_seed_design, flag_seed_design_causal
from connectors.synthetic import generate_quiet_tape


def quiet_tape(count: int, seed: int = 5) -> list[dict]:
    return generate_quiet_tape(symbols=1, trades=count, seed=seed)


def with_print(trades: list[dict], position: int, **changes) -> list[dict]:
    changed = [dict(t) for t in trades]
    changed[position].update(changes)
    return changed


def test_rolling_zscore_flags_a_price_spike_and_a_huge_size_on_their_trade():
    trades = quiet_tape(600)
    spiked = with_print(trades, 300, price=round(trades[299]["price"] * 1.02, 2))
    spiked = with_print(spiked, 450, size=200_000)
    flags = flag_rolling_zscore(spiked)
    assert flags[300] and flags[450]
    quiet_flags = flag_rolling_zscore(trades)
    assert not quiet_flags[300] and not quiet_flags[450]


def test_causal_seed_design_judges_nothing_before_its_first_fit_and_flags_a_far_print_after():
    trades = quiet_tape(1_200)
    far = with_print(trades, 700, price=round(trades[699]["price"] * 1.03, 2), size=50_000)
    flags = flag_seed_design_causal(far, seed=0)
    assert not flags[:500].any()
    assert flags[700]
    assert np.array_equal(flags, flag_seed_design_causal(far, seed=0))


def test_seed_design_fitted_on_the_block_flags_about_a_tenth_and_the_far_print():
    trades = quiet_tape(1_500)
    far = with_print(trades, 700, price=round(trades[699]["price"] * 1.03, 2), size=50_000)
    flags = flag_seed_design(far, seed=0)
    assert flags[700]
    assert 0.03 < flags.mean() < 0.15  # EllipticEnvelope's default contamination is 10%


def test_half_space_trees_is_deterministic_for_a_seed():
    trades = quiet_tape(800)
    flags = flag_half_space_trees(trades, seed=42)
    assert flags.dtype == bool and len(flags) == 800
    assert np.array_equal(flags, flag_half_space_trees(trades, seed=42))
    assert 0 < flags.sum() < 800  # scores above 0.7 happen, but not on every trade


@pytest.mark.parametrize("name", sorted(PEERS))
def test_every_peer_gives_one_flag_per_trade(name):
    trades = quiet_tape(700)
    assert PEERS[name](trades, 0).shape == (700,)
