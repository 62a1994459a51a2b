"""IsolationForest with a rolling forest: each retrain refits a slice of the trees.

Each retrain grows ``trees_per_fit`` trees: scikit-learn's own (``grow``, a real
``IsolationForest``), or the same trees node for node from one compiled call
(``grow_flat``, ``models.detectors.isolation_growth``: about 0.9 ms for five trees
against 7-9 ms), which the serving path uses. The serving forest is the newest
``n_trees`` of them, so it spans the last ``n_trees / trees_per_fit`` retrains of
recent data: refreshing a few trees instead of regrowing 100 is what makes
retraining every 500 trades affordable. ``flatten`` turns a tree into the node
records of ``models.detectors.flat_trees`` that the compiled scoring kernel walks;
``score`` here walks scikit-learn's trees (``Tree.apply``, the path length per leaf
built once at fit time): the same score as ``IsolationForest.score_samples``, kept
as the reference.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from sklearn.ensemble import IsolationForest

from models.detectors.flat_trees import FlatForest, FlatTree, average_path_length, node_records
from models.detectors.isolation_growth import grow_trees

# FlatForest stays importable from here: snapshots pickled before models.detectors.flat_trees
# existed name it in this module.
__all__ = ["FlatForest", "IsolationForestVote", "flatten"]


class _ScoredTree:
    """One fitted isolation tree and the path length of each of its leaves."""

    __slots__ = ("tree", "features", "path_length")

    def __init__(self, estimator, features: np.ndarray) -> None:
        tree = estimator.tree_
        depth = np.zeros(tree.node_count)
        level = np.array([0])
        while len(level):  # breadth first, one level of the tree per step
            children = np.concatenate([tree.children_left[level], tree.children_right[level]])
            children = children[children != -1]
            depth[children] = depth[level].max() + 1
            level = children
        self.tree = tree
        # IsolationForest grows every tree on all features in order; keep the
        # column selection only if it is not that, to avoid a copy per tree.
        self.features = None if np.array_equal(features, np.arange(len(features))) else features
        self.path_length = depth + average_path_length(tree.n_node_samples)

    def path_lengths(self, X32: np.ndarray) -> np.ndarray:
        columns = X32 if self.features is None else np.ascontiguousarray(X32[:, self.features])
        return self.path_length[self.tree.apply(columns)]


class IsolationForestVote:
    """Votes when the isolation anomaly score, ``2 ** (-E[h(x)] / c(max_samples))``, is high."""

    def __init__(
        self, n_trees: int = 100, trees_per_fit: int = 5, max_samples: int = 256,
        threshold: float = 0.58, seed: int = 0,
    ) -> None:
        self.n_trees = n_trees
        self.trees_per_fit = trees_per_fit
        self.max_samples = max_samples
        self.threshold = threshold
        self.seed = seed

    def fit(self, X: np.ndarray) -> IsolationForestVote:
        """Replace the oldest ``trees_per_fit`` trees with trees grown on ``X`` (the first fit grows the first)."""
        return self.add(self.grow(X, getattr(self, "fits_", 0)))

    def grow(self, X: np.ndarray, fit_number: int) -> list[_ScoredTree]:
        """Fit ``trees_per_fit`` new trees (a pure function of X, the seed and fit_number)."""
        forest = IsolationForest(
            n_estimators=self.trees_per_fit, max_samples=min(self.max_samples, len(X)),
            random_state=self.seed + fit_number,
        ).fit(X)
        return [_ScoredTree(tree, features) for tree, features in zip(forest.estimators_, forest.estimators_features_)]

    def grow_flat(self, X: np.ndarray, fit_number: int) -> list[FlatTree]:
        """``flatten`` of each tree ``grow`` fits, grown in one compiled call (``isolation_growth``)."""
        return grow_trees(X, self.trees_per_fit, self.max_samples, self.seed + fit_number)

    def add(self, trees: list[_ScoredTree]) -> IsolationForestVote:
        if not hasattr(self, "trees_"):  # learned state begins with the first trees
            self.trees_: deque[_ScoredTree] = deque(maxlen=self.n_trees)
            self.fits_ = 0
        self.trees_.extend(trees)
        samples = min(self.max_samples, int(trees[0].tree.n_node_samples[0]))
        self.normaliser_ = float(average_path_length(np.array([samples]))[0])
        self.fits_ += 1
        return self

    def score(self, X: np.ndarray) -> np.ndarray:
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        total = np.zeros(len(X))
        for tree in self.trees_:
            total += tree.path_lengths(X32)
        return 2.0 ** (-(total / len(self.trees_)) / self.normaliser_)

    def vote(self, scores: np.ndarray) -> np.ndarray:
        return scores >= self.threshold

    def __getstate__(self) -> dict:
        # Cython trees pickle with their own reducers; the deque keeps its bound.
        if not hasattr(self, "trees_"):
            return dict(self.__dict__)
        return {**self.__dict__, "trees_": list(self.trees_)}

    def __setstate__(self, state: dict) -> None:
        if "trees_" in state:
            state["trees_"] = deque(state["trees_"], maxlen=state["n_trees"])
        self.__dict__.update(state)


def flatten(scored: _ScoredTree) -> FlatTree:
    tree = scored.tree
    internal = tree.children_left != -1
    order = np.arange(tree.node_count)
    if not np.array_equal(tree.children_left[internal], order[internal] + 1):
        raise ValueError("tree is not stored depth first: a left child is not the next node")
    columns = np.arange(tree.n_features) if scored.features is None else np.asarray(scored.features)
    nodes = node_records(internal, columns[np.maximum(tree.feature, 0)], tree.threshold, tree.children_right,
                         scored.path_length, len(columns))
    return FlatTree(nodes, int(tree.n_node_samples[0]), int(tree.max_depth))
