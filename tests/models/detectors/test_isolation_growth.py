"""The compiled isolation-tree grower gives scikit-learn's trees, node for node."""

from __future__ import annotations

import numpy as np
import pytest
import sklearn
from sklearn.ensemble import IsolationForest

from models.detectors.isolation_forest import IsolationForestVote, _ScoredTree, flatten
from models.detectors.isolation_growth import grow_trees

RNG = np.random.default_rng(7)
INPUTS = {
    "normal": RNG.standard_normal((500, 6)),
    "ties (three values per input)": RNG.integers(0, 3, (500, 6)).astype(float),
    "a constant input": np.c_[RNG.standard_normal((500, 5)), np.full(500, 4.0)],
    "every input constant": np.ones((300, 4)),
    "fewer samples than max_samples": RNG.standard_normal((40, 6)),
    "two samples": RNG.standard_normal((2, 3)),
    "repeated rows": np.repeat(RNG.standard_normal((30, 6)), 17, axis=0),
    "heavy tails and large values": RNG.standard_t(1, (500, 6)) * 1e5,
    "one input": RNG.standard_normal((500, 1)),
    "eighteen inputs": RNG.standard_normal((500, 18)),
    "values a float32 step apart": 1.0 + np.float32(1e-7) * RNG.integers(0, 4, (500, 3)),
}


def sklearn_trees(X: np.ndarray, n_trees: int, max_samples: int, seed: int):
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        forest = IsolationForest(n_estimators=n_trees, max_samples=min(max_samples, len(X)), random_state=seed).fit(X)
    return [flatten(_ScoredTree(tree, features)) for tree, features in zip(forest.estimators_, forest.estimators_features_)]


@pytest.mark.parametrize("name", INPUTS)
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_the_grown_trees_are_scikit_learns(name, seed):
    X = INPUTS[name]
    expected, grown = sklearn_trees(X, 5, 256, seed), grow_trees(X, 5, 256, seed)
    assert len(grown) == len(expected) == 5
    for mine, theirs in zip(grown, expected):
        assert (mine.root_samples, mine.depth) == (theirs.root_samples, theirs.depth)
        assert mine.nodes.dtype == theirs.nodes.dtype and len(mine.nodes) == len(theirs.nodes)
        assert mine.nodes.tobytes() == theirs.nodes.tobytes()


def test_the_detector_grows_the_same_trees_either_way():
    vote = IsolationForestVote(n_trees=20, trees_per_fit=5, seed=3)
    X = INPUTS["normal"]
    for fit_number in (0, 7):
        flat = vote.grow_flat(X, fit_number)
        assert [tree.nodes.tobytes() for tree in flat] == [
            flatten(tree).nodes.tobytes() for tree in vote.grow(X, fit_number)]


def test_trees_differ_between_fits_and_reach_the_depth_limit():
    X = INPUTS["normal"]
    first, second = grow_trees(X, 5, 256, 0), grow_trees(X, 5, 256, 1)
    assert first[0].nodes.tobytes() != second[0].nodes.tobytes()
    for tree in first:
        leaves = tree.nodes["feature"] == X.shape[1]
        assert tree.depth == 8 and leaves.any() and (~leaves).any()


def test_a_tree_too_large_for_the_node_record_is_refused():
    X = RNG.random((70_000, 4))  # about 35,000 nodes: more than a 16-bit child index holds
    with pytest.raises(ValueError, match="does not fit the node record"):
        grow_trees(X, 1, 70_000, 0)
