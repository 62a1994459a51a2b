"""Every detector: fit/score/vote protocol, pickling, same seed gives same scores."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.covariance import EllipticEnvelope
from sklearn.ensemble import IsolationForest
from sklearn.preprocessing import StandardScaler

from models.detectors import EllipticEnvelopeVote, IsolationForestVote, ZScoreVote
from models.detectors.zscore import price_zscores
from models.detectors.elliptic_envelope import RIDGE
from models.detectors.flat_trees import average_path_length
from models.detectors.isolation_forest import _ScoredTree
from models.config import DetectorConfig
from models.features import COLUMN, FEATURE_NAMES
from models.training import envelope_from_config, forest_from_config, zscore_from_config


def sample(seed: int, rows: int = 400, columns: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, columns)) * [1, 2, 3, 4, 5][:columns] + 10
    X[:4] += 25  # a few far-out rows
    return X


def feature_rows(seed: int, rows: int = 400) -> np.ndarray:
    rng = np.random.default_rng(seed)
    features = np.zeros((rows, len(FEATURE_NAMES)))
    features[:, COLUMN["current_price"]] = 100 + rng.standard_normal(rows) * 0.05
    features[:, COLUMN["price_mean"]] = 100.0
    features[:, COLUMN["price_std"]] = 0.05
    features[:, COLUMN["current_size"]] = rng.lognormal(4, 1, rows).round()
    features[:, COLUMN["price_volatility"]] = 0.0005 * rng.lognormal(0, 0.3, rows)
    return features


DETECTORS = {
    "isolation_forest": (lambda: IsolationForestVote(n_trees=20, trees_per_fit=10, seed=3), sample),
    "elliptic_envelope": (lambda: EllipticEnvelopeVote(threshold=30, cold_every=3, seed=3), sample),
    "zscore": (lambda: ZScoreVote(), feature_rows),
}


@pytest.mark.parametrize("default, product", [
    (IsolationForestVote, forest_from_config),
    (EllipticEnvelopeVote, envelope_from_config),
    (ZScoreVote, zscore_from_config),
], ids=["isolation_forest", "elliptic_envelope", "zscore"])
def test_a_detector_built_with_its_defaults_has_the_products_settings(default, product):
    """Constructor defaults are the product's (``DetectorConfig()``), so a detector built
    bare in a notebook or a test behaves as the one the engine serves; only the seed and
    the per-input scale floors come from elsewhere."""
    built, served = vars(default()), vars(product(DetectorConfig()))
    settings = {name for name in built if not name.endswith("_") and name not in ("seed", "scale_floor")}
    assert settings and {name: built[name] for name in settings} == {name: served[name] for name in settings}


def scores_of(detector, X):
    return detector.score(detector.zscores(X)) if isinstance(detector, ZScoreVote) else detector.score(X)


@pytest.mark.parametrize("name", DETECTORS)
def test_scores_are_finite_and_votes_follow_the_threshold(name):
    make, data = DETECTORS[name]
    detector = make().fit(data(0))
    scores = scores_of(detector, data(1))
    assert scores.shape == (400,) and np.isfinite(scores).all()
    assert (detector.vote(scores) == (scores >= (1.0 if name == "zscore" else detector.threshold))).all()


@pytest.mark.parametrize("name", DETECTORS)
def test_far_out_rows_score_higher(name):
    make, data = DETECTORS[name]
    X = data(0)
    if name == "zscore":
        X[:4, COLUMN["current_size"]] = 50_000
    scores = scores_of(make().fit(data(1)), X)
    assert scores[:4].min() > np.median(scores[4:])


@pytest.mark.parametrize("name", DETECTORS)
def test_pickling_round_trip_keeps_scores(name):
    make, data = DETECTORS[name]
    detector = make().fit(data(0)).fit(data(2))
    restored = pickle.loads(pickle.dumps(detector))
    np.testing.assert_array_equal(scores_of(restored, data(1)), scores_of(detector, data(1)))


@pytest.mark.parametrize("name", DETECTORS)
def test_same_seed_same_scores(name):
    make, data = DETECTORS[name]
    first = make().fit(data(0)).fit(data(2))
    second = make().fit(data(0)).fit(data(2))
    np.testing.assert_array_equal(scores_of(first, data(1)), scores_of(second, data(1)))


def test_isolation_score_equals_scikit_learn_score_samples():
    X = sample(0)
    forest = IsolationForest(n_estimators=25, max_samples=256, random_state=5).fit(X)
    vote = IsolationForestVote(n_trees=25, trees_per_fit=25)
    vote.add([_ScoredTree(tree, features) for tree, features in zip(forest.estimators_, forest.estimators_features_)])
    assert vote.normaliser_ == float(average_path_length(np.array([256]))[0])
    np.testing.assert_allclose(vote.score(sample(1)), -forest.score_samples(sample(1)), rtol=1e-12)


def test_rolling_forest_keeps_the_newest_trees():
    vote = IsolationForestVote(n_trees=20, trees_per_fit=5, seed=1)
    for seed in range(6):
        vote.fit(sample(seed))
    assert len(vote.trees_) == 20 and vote.fits_ == 6
    # The oldest two fits (10 trees) are gone: refitting only the last four gives the same forest.
    again = IsolationForestVote(n_trees=20, trees_per_fit=5, seed=1)
    for seed in range(2, 6):
        again.add(again.grow(sample(seed), fit_number=seed))
    np.testing.assert_array_equal(again.score(sample(9)), vote.score(sample(9)))


def test_envelope_cold_fit_is_scikit_learns_elliptic_envelope():
    X = sample(0)
    floor = np.array([0.5, 0.5, 0.5, 0.5, 10.0])  # the last input's spread (5) is below its floor
    vote = EllipticEnvelopeVote(support_fraction=0.9, scale_floor=floor, seed=4).fit(X)
    scale = np.maximum(StandardScaler().fit(X).scale_, floor)
    scaled = (X - X.mean(axis=0)) / scale
    reference = EllipticEnvelope(contamination=0.01, support_fraction=0.9, random_state=4).fit(scaled)
    # the documented regularisation: each input's floor variance (in scaled units) on the diagonal
    reference.precision_ = np.linalg.inv(reference.covariance_ + np.diag((floor / scale) ** 2 + RIDGE))
    np.testing.assert_allclose(vote.score(X), reference.mahalanobis(scaled), rtol=1e-8)


@pytest.mark.filterwarnings("ignore:The covariance matrix associated to your dataset is not full rank")
@pytest.mark.parametrize("varied_rows", [0, 20])  # all rows alike; a support (90%) of alike rows
def test_an_envelope_on_rows_sharing_one_point_still_fits_and_then_warm_starts(varied_rows):
    """scikit-learn refuses a support without spread; an instrument re-printing one trade must not
    make every retrain fail. The envelope is the point, its width the floors'."""
    rng = np.random.default_rng(3)
    point = np.array([0.01, 0.0, 0.0, 0.0])
    X = np.tile(point, (500, 1))
    X[:varied_rows] += rng.normal(0, 1, (varied_rows, 4))
    vote = EllipticEnvelopeVote(cold_every=50, scale_floor=np.array([0.01, 2.0, 5.0, 0.25]), seed=0)
    for _ in range(3):  # a cold fit, then warm ones that have no spread to start from
        vote.fit(X)
    assert vote.fits_ == 3 and np.isfinite(vote.precision_).all()
    at_point, away = vote.score(np.vstack([point, point + [0.0, 40.0, 0.0, 0.0]]))
    assert at_point < 1.0 and np.isfinite(away) and away > 100.0


def test_warm_started_envelope_stays_close_to_a_cold_fit():
    vote = EllipticEnvelopeVote(cold_every=100, seed=4).fit(sample(0))
    vote.fit(sample(1))  # warm: starts from the estimate on sample(0)
    cold = EllipticEnvelopeVote(seed=4).fit(sample(1))
    test = sample(2)[4:]
    warm_scores, cold_scores = vote.score(test), cold.score(test)
    assert np.corrcoef(warm_scores, cold_scores)[0, 1] > 0.98
    assert np.median(warm_scores) == pytest.approx(np.median(cold_scores), rel=0.15)


@pytest.mark.parametrize("columns", [1, 4])
def test_warm_fit_covariance_is_scikit_learns(columns, monkeypatch):
    """The warm fit's concentration steps skip empirical_covariance's input checks: same numbers."""
    from sklearn.covariance import empirical_covariance

    from models.detectors import elliptic_envelope

    def fitted(covariance):
        monkeypatch.setattr(elliptic_envelope, "_covariance", covariance)
        vote = EllipticEnvelopeVote(cold_every=100, seed=4).fit(sample(0)[:, :columns])
        return vote.fit(sample(1)[:, :columns]).compact()

    fast, checked = fitted(elliptic_envelope._covariance), fitted(empirical_covariance)
    for name in ("location", "precision", "raw_location", "raw_covariance"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(checked, name))


@pytest.mark.parametrize("columns, seed", [(1, 0), (4, 0), (4, 1), (4, 2)])
def test_correct_and_reweight_is_scikit_learns(columns, seed):
    """The warm fit's correction and reweighting with cached chi-square constants: the same numbers
    as ``MinCovDet.correct_covariance`` and ``reweight_covariance``."""
    from sklearn.covariance import EllipticEnvelope

    from models.detectors.elliptic_envelope import _correct_and_reweight

    data = np.random.default_rng(seed).standard_t(3, (500, columns))
    raw = EllipticEnvelope(random_state=seed).fit(data)

    def from_raw():
        envelope = EllipticEnvelope(random_state=seed)
        envelope.raw_location_, envelope.raw_covariance_ = raw.raw_location_.copy(), raw.raw_covariance_.copy()
        envelope.support_ = raw.raw_support_.copy()
        envelope.location_ = raw.raw_location_.copy()
        centred = data - raw.raw_location_
        envelope.dist_ = np.sum(np.dot(centred, np.linalg.pinv(raw.raw_covariance_)) * centred, 1)
        return envelope

    ours, theirs = from_raw(), from_raw()
    _correct_and_reweight(ours, data)
    theirs.correct_covariance(data)
    theirs.reweight_covariance(data)
    for name in ("covariance_", "precision_", "location_", "support_", "dist_"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name), err_msg=name)
    assert 0 < ours.support_.sum() < len(data)  # the reweighting left some samples out


def test_zscore_definitions():
    features = feature_rows(0)
    vote = ZScoreVote(price_threshold=4, volume_threshold=5, volatility_threshold=4.5).fit(features)
    row = features[:1].copy()
    row[0, COLUMN["current_price"]] = 100.5  # 0.5 above the mean, std 0.05
    row[0, COLUMN["current_size"]] = np.expm1(vote.center_[0] + 6 * vote.scale_[0])
    z = vote.zscores(row)[0]
    assert z[0] == pytest.approx(10.0)
    assert z[1] == pytest.approx(6.0)
    assert vote.score(vote.zscores(row))[0] == pytest.approx(10.0 / 4)


@pytest.mark.parametrize("size_vs_tail, trades_since_large, score", [
    (5.5, 10_000, 5.5 / 5),  # no large print before: the plain limit
    (5.5, 2_001, 5.5 / 5),
    (5.5, 2_000, 5.5 / 6),   # within 2,000 trades of one: the raised limit
    (6.6, 1, 6.6 / 6),
])
def test_a_size_soon_after_a_large_print_meets_the_raised_limit(size_vs_tail, trades_since_large, score):
    vote = ZScoreVote(size_tail_limit=5, size_tail_limit_after_large=6)
    limited = ZScoreVote.limited_inputs(*(np.array([value]) for value in (size_vs_tail, 0, 0, 0, 0, 0, trades_since_large)))
    assert vote.score(np.zeros((1, 5)), limited)[0] == pytest.approx(score)


def test_price_std_is_floored_at_one_basis_point():
    features = feature_rows(0)[:1]
    features[0, COLUMN["price_std"]] = 0.0
    features[0, COLUMN["current_price"]] = 100.01  # one tick after a run of equal prices
    assert price_zscores(features)[0] == pytest.approx(0.01 / 0.01)


def test_small_sizes_and_calm_windows_do_not_vote():
    features = feature_rows(0)
    vote = ZScoreVote(volume_threshold=3, volatility_threshold=3).fit(features)
    row = features[:1].copy()
    row[0, COLUMN["current_size"]] = 1
    row[0, COLUMN["price_volatility"]] = 1e-9
    z = vote.zscores(row)
    assert z[0, 1] < -3 and z[0, 2] < -3  # far below their means...
    assert not vote.vote(vote.score(z))[0]  # ...which is not an anomaly


def test_intensity_zscore_flags_a_two_sided_burst_not_a_one_sided_sweep():
    features = feature_rows(0)
    features[:, COLUMN["trades_per_second"]] = 20.0
    features[:, COLUMN["bid_ratio"]] = features[:, COLUMN["ask_ratio"]] = 0.45
    vote = ZScoreVote(intensity_threshold=5).fit(features)
    burst, sweep = features[:1].copy(), features[:1].copy()
    burst[0, COLUMN["trades_per_second"]] = sweep[0, COLUMN["trades_per_second"]] = 99_000.0
    sweep[0, COLUMN["bid_ratio"]], sweep[0, COLUMN["ask_ratio"]] = 1.0, 0.0
    # balanced sides (imbalance 0) and a spread floored at 1.0: z is the difference of the log rates
    assert vote.zscores(burst)[0, 3] == pytest.approx(np.log1p(99_000) - np.log1p(20))
    assert vote.vote(vote.score(vote.zscores(burst)))[0]
    assert not vote.vote(vote.score(vote.zscores(sweep)))[0]
