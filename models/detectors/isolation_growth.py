"""Growing isolation trees in one compiled call: the trees scikit-learn grows, node for node.

A retrain grows five small trees (256 samples, depth at most 8). scikit-learn's
``IsolationForest.fit`` spends most of its ~9 ms on the machinery around them
(bagging, estimator cloning, validation, the per-tree Cython set-up), not on the
trees: the fitting helper, not the scoring, bounded the offline engine. Here the
same random choices are drawn the same way, so the flat trees are identical to
``flatten`` of scikit-learn's (``tests/models/detectors/test_isolation_growth.py`` checks it
on every kind of input), at a fraction of the cost.

The random choices, as scikit-learn 1.x makes them for ``IsolationForest(n_estimators,
max_samples, random_state=seed)`` on ``n`` samples of ``k`` inputs:

* the bagging draws one seed per tree, ``RandomState(seed).randint(2**31 - 1, size=trees)``;
* per tree, ``RandomState(tree seed)`` draws the input order (unused: every input, in
  order) and then the tree's samples, ``sample_without_replacement(n, max_samples)``;
  a second ``RandomState(tree seed)`` gives the tree's own seed, and that one the seed of
  its splitter's ``rand_r`` generator (``randint(0, 2**31 - 1)``);
* the splitter, depth first (left child first), draws an input with a Fisher-Yates
  step that skips inputs found constant in the node or its ancestors, and a threshold
  uniformly between the input's smallest and largest value in the node.

A node is a leaf at depth ``ceil(log2(max_samples))``, with one sample, or when every
input is constant in it. (scikit-learn also stops where the variance of its random
regression target is below machine epsilon, which for distinct uniform draws does
not happen.)
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from sklearn.utils.random import sample_without_replacement

from models.detectors.flat_trees import FlatTree, average_path_length, node_records

INT32_MAX = np.iinfo(np.int32).max
RAND_R_MAX = 2**31 - 1
FEATURE_THRESHOLD = np.float32(1e-7)
"""An input is constant in a node when its largest value is at most its smallest plus this
(added in float32, as scikit-learn does: near 1.0 that is one float32 step)."""


def grow_trees(X: np.ndarray, n_trees: int, max_samples: int, seed: int) -> list[FlatTree]:
    """``flatten`` of every tree of ``IsolationForest(n_trees, max_samples, random_state=seed).fit(X)``."""
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    n_samples = len(X32)
    samples = min(max_samples, n_samples)
    max_depth = int(math.ceil(math.log2(max(samples, 2))))
    trees = []
    draws = np.random.RandomState()  # re-seeded for every draw: seeding is ~2 us, a new RandomState ~160 us
    draws.seed(seed)
    for tree_seed in draws.randint(INT32_MAX, size=n_trees):
        draws.seed(tree_seed)
        sample_without_replacement(X32.shape[1], X32.shape[1], random_state=draws)  # input order: unused
        chosen = np.sort(sample_without_replacement(n_samples, samples, random_state=draws)).astype(np.int64)
        draws.seed(tree_seed)
        draws.seed(draws.randint(INT32_MAX))
        splitter_seed = draws.randint(0, RAND_R_MAX)
        nodes, depth = _grow(X32, chosen, max_depth, np.uint32(splitter_seed))
        trees.append(_flat_tree(nodes, X32.shape[1], samples, depth))
    return trees


def _flat_tree(nodes: tuple[np.ndarray, ...], n_inputs: int, root_samples: int, depth: int) -> FlatTree:
    """The grower's node table as ``NODE`` records (leaves hold their path length)."""
    feature, threshold, right, n_node, node_depth = nodes
    path_length = node_depth + average_path_length(n_node)
    return FlatTree(node_records(feature >= 0, feature, threshold, right, path_length, n_inputs), root_samples, depth)


@njit(cache=True, nogil=True)
def _next(state):
    """scikit-learn's ``our_rand_r``: xorshift32, reduced to 31 bits."""
    s = np.int64(state[0])
    if s == 0:
        s = 1
    s ^= (s << 13) & 0xFFFFFFFF
    s ^= s >> 17
    s ^= (s << 5) & 0xFFFFFFFF
    state[0] = np.uint32(s)
    return s % (RAND_R_MAX + 1)


@njit(cache=True, nogil=True)
def _grow(X, samples, max_depth, seed):
    """One tree, depth first: (feature, threshold, right child, samples, depth) per node, and its depth."""
    n_inputs = X.shape[1]
    state = np.empty(1, np.uint32)
    state[0] = seed
    capacity = 2 ** (max_depth + 1)
    feature = np.full(capacity, -2, np.int64)
    threshold = np.full(capacity, -2.0)
    right = np.full(capacity, -1, np.int64)
    n_node = np.zeros(capacity, np.int64)
    node_depth = np.zeros(capacity, np.int64)
    inputs = np.arange(n_inputs)
    constant = np.zeros(n_inputs, np.int64)
    # the stack, one row per node to grow: start, end, depth, parent, is_left, constant inputs known
    stack = np.zeros((max_depth + 2, 6), np.int64)
    stack[0, 1], stack[0, 3] = len(samples), -1
    top, count, deepest = 1, 0, 0
    while top:
        top -= 1
        start, end, depth = stack[top, 0], stack[top, 1], stack[top, 2]
        parent, is_left, known = stack[top, 3], stack[top, 4], stack[top, 5]
        node = count
        count += 1
        if parent >= 0 and not is_left:
            right[parent] = node
        n_node[node], node_depth[node] = end - start, depth
        deepest = max(deepest, depth)
        if depth >= max_depth or end - start < 2:
            continue
        pos, chosen, cut, known_after = _split(X, samples, start, end, inputs, constant, known, state)
        if pos >= end:
            continue  # every input constant here: a leaf
        feature[node], threshold[node] = chosen, cut
        for row, (first, last, left) in enumerate(((pos, end, 0), (start, pos, 1))):  # the left child pops first
            stack[top + row, 0], stack[top + row, 1], stack[top + row, 2] = first, last, depth + 1
            stack[top + row, 3], stack[top + row, 4], stack[top + row, 5] = node, left, known_after
        top += 2
    out = (feature[:count].copy(), threshold[:count].copy(), right[:count].copy(),
           n_node[:count].copy(), node_depth[:count].copy())
    return out, deepest


@njit(cache=True, nogil=True)
def _split(X, samples, start, end, inputs, constant, known, state):
    """scikit-learn's random split with one input drawn: (position, input, threshold, constants known)."""
    f_i = len(inputs)
    found = drawn = visited = 0
    total = known
    best_pos, best_input, best_cut = end, -2, -2.0
    while f_i > total and (visited < 1 or visited <= found + drawn):
        visited += 1
        f_j = drawn + _next(state) % (f_i - found - drawn)
        if f_j < known:  # an input known to be constant: set it aside, draw again
            inputs[drawn], inputs[f_j] = inputs[f_j], inputs[drawn]
            drawn += 1
            continue
        f_j += found
        current = inputs[f_j]
        low = high = X[samples[start], current]
        for p in range(start + 1, end):
            value = X[samples[p], current]
            if value < low:
                low = value
            elif value > high:
                high = value
        if high <= np.float32(low + FEATURE_THRESHOLD):  # constant in this node
            inputs[f_j], inputs[total] = inputs[total], current
            found += 1
            total += 1
            continue
        f_i -= 1
        inputs[f_i], inputs[f_j] = inputs[f_j], inputs[f_i]
        cut = (np.float64(high) - np.float64(low)) * np.float64(_next(state)) / RAND_R_MAX + np.float64(low)
        if cut == np.float64(high):
            cut = np.float64(low)
        p, q = start, end  # samples <= cut to the left
        while p < q:
            if X[samples[p], current] <= cut:
                p += 1
            else:
                q -= 1
                samples[p], samples[q] = samples[q], samples[p]
        best_pos, best_input, best_cut = p, current, cut
    inputs[:known] = constant[:known]
    constant[known:known + found] = inputs[known:known + found]
    return best_pos, best_input, best_cut, total
