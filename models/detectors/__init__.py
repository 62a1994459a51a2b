"""The three voters of the ensemble.

Each one follows the same small protocol: ``fit(X)`` learns from recent samples
(learned attributes end in ``_``), ``score(X)`` gives one number per row where
larger is more anomalous, and ``vote(scores)`` compares with a threshold that is
kept apart from the score.
"""

from models.detectors.elliptic_envelope import EllipticEnvelopeVote
from models.detectors.isolation_forest import IsolationForestVote
from models.detectors.zscore import ZScoreVote

__all__ = ["EllipticEnvelopeVote", "IsolationForestVote", "ZScoreVote"]
