"""The three voters of the ensemble, and the cold-start detector.

Each voter follows the same small protocol: ``fit(X)`` learns from recent samples
(learned attributes end in ``_``), ``score(...)`` gives one number per row where
larger is more anomalous, and ``vote(scores)`` compares with a threshold that is
kept apart from the score. The forest and the envelope score their model inputs
(``score(X)``); the z-score voter scores its z-scores and the fixed-limit inputs
(``score(zscores, limited_inputs)``).

Where each part runs: ``fit`` is what the engine trains with (``models.training``, every 500
trades); scoring a trade in the engine is the compiled kernel (``models.kernel.score_run``), which
computes the same scores for a run of trades in one call. ``score`` and ``vote`` here are the
readable definition of those numbers: ``models.reference`` scores with them, and the tests check
that the kernel agrees, so a change to a detector's score is made in both.

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
