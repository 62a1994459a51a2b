"""The garbage-collector settings every entry point applies: raised, not disabled."""

from __future__ import annotations

import gc
import weakref

import pytest

from flows.runtime import OLDER_THRESHOLD, YOUNG_THRESHOLD, tune_garbage_collector


@pytest.fixture
def restored_collector():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class _Node:
    pass


def _cycle() -> weakref.ref:
    node = _Node()
    node.partner = _Node()
    node.partner.partner = node
    return weakref.ref(node)


def test_thresholds_are_raised_and_start_up_objects_frozen(restored_collector):
    tune_garbage_collector()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
    assert gc.isenabled()
    assert gc.get_freeze_count() > 1_000  # the imported modules at least


def test_cycles_made_afterwards_are_still_collected_automatically(restored_collector):
    tune_garbage_collector()
    node = _cycle()
    assert node() is not None
    churn = [[] for _ in range(2 * YOUNG_THRESHOLD)]  # tracked allocations trigger a young pass
    del churn
    assert node() is None
