"""Isolation trees as flat node records: what the compiled kernel walks and a snapshot keeps.

Both ways of growing trees end in these records: scikit-learn's, flattened in
``models.detectors.isolation_forest``, and the compiled ``models.detectors.isolation_growth``
(which the first one calls), so the imports go one way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def average_path_length(n_samples: np.ndarray) -> np.ndarray:
    """Expected path length of an unsuccessful BST search among ``n`` points, c(n)."""
    n = np.asarray(n_samples, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


NODE = np.dtype([("threshold", "<f8"), ("right", "<i2"), ("feature", "i1"), ("spare", "i1"), ("spare4", "<i4")])
"""One tree node in 16 bytes (scikit-learn keeps 64): one cache line read per step of a walk."""


@dataclass(frozen=True)
class FlatTree:
    """One isolation tree as a flat array of ``NODE`` records, depth first (a left child is the next node).

    ``threshold`` is the split threshold (float64, as scikit-learn keeps it), ``feature``
    the model input it splits on, ``right`` the right child within the tree. A leaf
    splits on the input one past the last, which the kernel holds at +inf, so it
    always goes "right" to itself, and keeps its path length in ``threshold``: a walk
    takes a fixed number of steps (``depth``) without testing for leaves or branching.
    """

    nodes: np.ndarray
    root_samples: int
    depth: int


def node_records(internal: np.ndarray, feature: np.ndarray, threshold: np.ndarray, right: np.ndarray,
                 path_length: np.ndarray, n_inputs: int) -> np.ndarray:
    """A depth-first tree's nodes as ``NODE`` records: a leaf splits on input ``n_inputs``,
    points to itself and holds its path length. Raises if the tree does not fit the record."""
    count = len(internal)
    if count >= 2**15 or n_inputs >= 127:
        raise ValueError(f"an isolation tree of {count} nodes on {n_inputs} inputs does not fit the node record")
    nodes = np.zeros(count, NODE)
    nodes["threshold"] = np.where(internal, threshold, path_length)
    nodes["right"] = np.where(internal, right, np.arange(count))
    nodes["feature"] = np.where(internal, feature, n_inputs)
    return nodes


@dataclass(frozen=True)
class FlatForest:
    """The serving forest: the newest trees, oldest first, concatenated for the kernel.

    Immutable: ``add`` returns a new forest, so a snapshot may hold this one as it is.
    """

    offsets: np.ndarray  # int32, trees + 1: where each tree starts
    nodes: np.ndarray  # NODE records
    normaliser: float = 1.0
    depth: int = 0

    @classmethod
    def empty(cls) -> FlatForest:
        return cls(np.zeros(1, np.int32), np.zeros(0, NODE))

    @property
    def trees(self) -> int:
        return len(self.offsets) - 1

    def add(self, trees: list[FlatTree], n_trees: int, max_samples: int) -> FlatForest:
        """The newest ``n_trees`` of this forest's trees followed by ``trees``."""
        drop = max(0, self.trees + len(trees) - n_trees)
        start = int(self.offsets[drop])
        sizes = np.concatenate([np.diff(self.offsets[drop:]), [len(tree.nodes) for tree in trees]])
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
        samples = min(max_samples, trees[0].root_samples)
        return FlatForest(
            offsets,
            np.concatenate([self.nodes[start:], *(tree.nodes for tree in trees)]),
            float(average_path_length(np.array([samples]))[0]),
            # an upper bound of the serving trees' depth: extra steps stay on the leaf
            max([tree.depth for tree in trees] + ([self.depth] if drop < self.trees else [])),
        )
