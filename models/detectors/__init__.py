"""The three voters of the ensemble, and the cold-start detector.

Each voter follows the same small protocol: ``fit(X)`` learns from recent samples
(learned attributes end in ``_``), ``score(...)`` gives one number per row where
larger is more anomalous, and ``vote(scores)`` compares with a threshold that is
kept apart from the score. The forest and the envelope score their model inputs
(``score(X)``); the z-score voter scores its z-scores and the fixed-limit inputs
(``score(zscores, limited_inputs)``).

``cold_start`` is the exception: one detector shared by every instrument that has
no models of its own yet, with fixed thresholds and nothing to fit; it scores two
inputs (``score(deviation_bps, size_vs_max)``) and ``vote(scores, positions)`` also
needs each trade's position in its instrument's life, since it only serves a range
of trades.
"""

from models.detectors.elliptic_envelope import EllipticEnvelopeVote
from models.detectors.isolation_forest import IsolationForestVote
from models.detectors.zscore import ZScoreVote

__all__ = ["EllipticEnvelopeVote", "IsolationForestVote", "ZScoreVote"]
