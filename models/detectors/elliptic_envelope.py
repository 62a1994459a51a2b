"""EllipticEnvelope (robust covariance) with warm-started refits.

scikit-learn's ``EllipticEnvelope.fit`` runs FastMCD: 30 random starts, 25-40 ms
on 500 rows and over a second on 1,000. Retraining every 500 trades cannot
afford that, and does not need it: the robust estimate moves little between two
retrains. So a cold FastMCD fit happens once every ``cold_every`` retrains, and the
retrains in between start scikit-learn's concentration steps (``c_step``) from the
previous estimate, then apply the same consistency correction and reweighting as
``MinCovDet.fit`` (about 1.5 ms). The score is the robust squared Mahalanobis
distance on StandardScaler-scaled inputs, as ``EllipticEnvelope.mahalanobis``
but with a slightly regularised covariance (see ``_regularised_precision``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import linalg
from scipy.stats import chi2
from sklearn.covariance import EllipticEnvelope
from sklearn.covariance._robust_covariance import _consistency_factor, c_step
from sklearn.preprocessing import StandardScaler


RIDGE = 1e-6
POINT_SUPPORT = "The covariance matrix of the support data is equal to 0"
"""scikit-learn's refusal (and ours in ``_correct_and_reweight``) when the support has no spread."""
WARM_ITERATIONS = 10
"""Concentration steps from the previous estimate; they converge in a few."""
REWEIGHT_QUANTILE = 0.025
"""``MinCovDet.reweight_covariance``: samples beyond this chi-square tail are left out."""


@dataclass(frozen=True)
class EnvelopeModel:
    """A fitted envelope in compact form: what scoring needs and what the next warm start needs.

    A few hundred bytes against the kilobytes of scikit-learn's fitted object (which
    keeps the support mask and distances of every training row).
    """

    fits: int
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    location: np.ndarray
    precision: np.ndarray
    raw_location: np.ndarray
    raw_covariance: np.ndarray


class EllipticEnvelopeVote:
    """Votes when the robust squared Mahalanobis distance reaches ``threshold``."""

    def __init__(
        self, threshold: float = 4000.0, cold_every: int = 50, contamination: float = 0.01,
        support_fraction: float | None = 0.9, scale_floor: np.ndarray | float = 1e-12,
        seed: int = 0,
    ) -> None:
        self.scale_floor = scale_floor
        self.threshold = threshold
        self.support_fraction = support_fraction
        self.cold_every = cold_every
        self.contamination = contamination
        self.seed = seed

    def fit(self, X: np.ndarray) -> EllipticEnvelopeVote:
        scaler = StandardScaler().fit(X)
        scaler.scale_ = np.maximum(scaler.scale_, self.scale_floor)
        scaled = scaler.transform(X)
        if not hasattr(self, "envelope_"):  # the first fit: nothing learned to start from
            self.fits_, self.scaler_, self.envelope_ = 0, None, None
        cold = (self.envelope_ is None or self.fits_ % self.cold_every == 0
                or not np.any(self.envelope_.raw_covariance_))  # nothing to start from after a point envelope
        try:
            if cold:
                envelope = EllipticEnvelope(
                    contamination=self.contamination, support_fraction=self.support_fraction,
                    random_state=self.seed + self.fits_,
                ).fit(scaled)
            else:
                envelope = self._warm_fit(scaled, scaler)
        except ValueError as error:
            if POINT_SUPPORT not in str(error):
                raise
            envelope = self._point_envelope(scaled)
        self.scaler_, self.envelope_ = scaler, envelope
        self.precision_ = _regularised_precision(
            envelope.covariance_, (np.broadcast_to(self.scale_floor, scaler.scale_.shape) / scaler.scale_) ** 2
        )
        self.fits_ += 1
        return self

    def _point_envelope(self, scaled: np.ndarray) -> EllipticEnvelope:
        """The support shares one point (an instrument re-printing one price, size and side):
        MCD has no spread to invert and scikit-learn refuses. The envelope is then that point
        with no spread of its own; ``_regularised_precision``'s floor variances give every
        direction its smallest meaningful width, so the next different trade stands out
        instead of the instrument's retrains failing for as long as it trades so."""
        envelope = EllipticEnvelope(
            contamination=self.contamination, support_fraction=self.support_fraction, random_state=self.seed
        )
        location = np.median(scaled, axis=0)
        spread = np.zeros((scaled.shape[1], scaled.shape[1]))
        envelope.raw_location_, envelope.raw_covariance_ = location, spread
        envelope.location_, envelope.covariance_ = location.copy(), spread.copy()
        envelope.n_features_in_ = scaled.shape[1]
        return envelope

    def _warm_fit(self, scaled: np.ndarray, scaler: StandardScaler) -> EllipticEnvelope:
        previous = self.envelope_
        # Carry the previous raw estimate into the new scaler's units.
        ratio = self.scaler_.scale_ / scaler.scale_
        location = (previous.raw_location_ * self.scaler_.scale_ + self.scaler_.mean_ - scaler.mean_) / scaler.scale_
        covariance = previous.raw_covariance_ * np.outer(ratio, ratio)
        n_samples, n_features = scaled.shape
        if self.support_fraction is None:  # scikit-learn's default, as in fast_mcd
            n_support = min(math.ceil(0.5 * (n_samples + n_features + 1)), n_samples)
        else:
            n_support = int(self.support_fraction * n_samples)
        raw_location, raw_covariance, _, raw_support, raw_dist = c_step(
            scaled, n_support, remaining_iterations=WARM_ITERATIONS,
            initial_estimates=(location, covariance),
            random_state=np.random.RandomState(self.seed + self.fits_),
            cov_computation_method=_covariance,
        )
        envelope = EllipticEnvelope(
            contamination=self.contamination, support_fraction=self.support_fraction, random_state=self.seed
        )
        envelope.raw_location_, envelope.raw_covariance_ = raw_location, raw_covariance
        envelope.raw_support_ = envelope.support_ = raw_support
        envelope.location_, envelope.dist_ = raw_location, raw_dist
        envelope.n_features_in_ = n_features
        _correct_and_reweight(envelope, scaled)
        envelope.offset_ = np.percentile(-envelope.dist_, 100.0 * self.contamination)
        return envelope

    def compact(self) -> EnvelopeModel:
        return EnvelopeModel(
            self.fits_, self.scaler_.mean_.copy(), self.scaler_.scale_.copy(), self.envelope_.location_.copy(),
            self.precision_.copy(), self.envelope_.raw_location_.copy(), self.envelope_.raw_covariance_.copy(),
        )

    def resume(self, model: EnvelopeModel | None) -> EllipticEnvelopeVote:
        """Take up the state of a compact fitted envelope (None: not fitted yet), to warm-start from it."""
        if model is None:
            return self
        scaler = StandardScaler()
        scaler.mean_, scaler.scale_ = model.scaler_mean.copy(), model.scaler_scale.copy()
        envelope = EllipticEnvelope(
            contamination=self.contamination, support_fraction=self.support_fraction, random_state=self.seed
        )
        envelope.raw_location_, envelope.raw_covariance_ = model.raw_location.copy(), model.raw_covariance.copy()
        envelope.location_ = model.location.copy()
        self.scaler_, self.envelope_, self.precision_ = scaler, envelope, model.precision.copy()
        self.fits_ = model.fits
        return self

    def score(self, X: np.ndarray) -> np.ndarray:
        # The scaler's own arithmetic, without scikit-learn's per-call validation.
        centred = (X - self.scaler_.mean_) / self.scaler_.scale_ - self.envelope_.location_
        return np.einsum("ij,jk,ik->i", centred, self.precision_, centred)

    def vote(self, scores: np.ndarray) -> np.ndarray:
        return scores >= self.threshold


def _covariance(X: np.ndarray) -> np.ndarray:
    """``empirical_covariance(X)``: the same ``np.cov`` call, without the input checks that cost
    more than the covariance in each concentration step (the rows are finite by construction)."""
    covariance = np.cov(X.T, bias=1)
    return covariance.reshape(1, 1) if covariance.ndim == 0 else covariance  # one input: a 1 x 1 matrix


@lru_cache(maxsize=1024)
def _consistency(n_features: int, alpha: float) -> float:
    return _consistency_factor(n_features, alpha)


@lru_cache(maxsize=64)
def _reweight_limit(n_features: int) -> float:
    return chi2(n_features).isf(REWEIGHT_QUANTILE)


def _correct_and_reweight(envelope: EllipticEnvelope, data: np.ndarray) -> None:
    """``MinCovDet.correct_covariance`` then ``reweight_covariance``: the same operations on the
    same values, with the chi-square constants (which depend only on the number of inputs and
    of support samples) computed once instead of by scipy at every refit, about half its cost."""
    n_samples, n_features = data.shape
    n_support = np.sum(envelope.support_)
    if n_support < n_samples and np.allclose(envelope.raw_covariance_, 0):
        raise ValueError("The covariance matrix of the support data is equal to 0, try to increase support_fraction")
    envelope.dist_ /= _consistency(n_features, n_support / n_samples)
    mask = envelope.dist_ < _reweight_limit(n_features)
    location = data[mask].mean(0)
    envelope.covariance_ = _covariance(data[mask]) * _consistency(n_features, 1 - REWEIGHT_QUANTILE)
    envelope.precision_ = linalg.pinvh(envelope.covariance_, check_finite=False)
    envelope.location_ = location
    envelope.support_ = np.zeros(n_samples, dtype=bool)
    envelope.support_[mask] = True
    centred = data - location
    envelope.dist_ = np.sum(np.dot(centred, envelope.precision_) * centred, 1)


def _regularised_precision(covariance: np.ndarray, floor_variance: np.ndarray) -> np.ndarray:
    """Inverse of the robust covariance with each input's floor variance added.

    Trade inputs are discrete and spiky (sizes in round lots, no price change for
    hundreds of trades), so the samples MCD keeps can share one value of an input and
    leave the covariance (nearly) singular: distances of 1e8 for ordinary trades.
    Adding the square of each input's smallest meaningful spread
    (``models.features.INPUT_SCALE_FLOORS``, in scaled units here) keeps every
    direction at least that wide.
    """
    return np.linalg.inv(covariance + np.diag(floor_variance + RIDGE))
