"""``bayesguide.sklearn``: scikit-learn's own estimator checks, model selection tools, and the
answers checked against the pipeline run by hand."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks

import bayesguide as bg
from bayesguide.pipeline import Selection, fit_model, select_architecture
from bayesguide.sklearn import GuidedClassifier, GuidedRegressor

#: small settings: every check of the suite fits in well under a second
SMALL = {"hidden": (6,), "steps": 60, "lr": 0.05, "n_candidates": 2, "fine_tune": 0, "bisect": 0,
         "hessian": "diag"}


@parametrize_with_checks([GuidedClassifier(**SMALL), GuidedRegressor(**SMALL)])
def test_scikit_learn_estimator_checks(estimator: object, check: object) -> None:
    check(estimator)  # type: ignore[operator]


def _blobs() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_blobs(n_samples=60, centers=3, n_features=3, cluster_std=1.0, random_state=0)
    return X, np.array(["cat", "dog", "emu"])[y]


def test_classifier_maps_labels_and_matches_the_pipeline() -> None:
    X, labels = _blobs()
    clf = GuidedClassifier(**SMALL).fit(X, labels)
    assert list(clf.classes_) == ["cat", "dog", "emu"]
    assert clf.n_features_in_ == 3
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(1)])
    assert clf.score(X, labels) == pytest.approx(np.mean(clf.predict(X) == labels))
    # the same pipeline, by hand: same network, same fit, same pick
    codes = np.unique(labels, return_inverse=True)[1]
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    model = bg.GuidedModel(net, bg.GuidedGroupLasso(1.0, bg.guidance.linear()))
    Xt, yt = torch.as_tensor(X), torch.as_tensor(codes)
    fit = fit_model(model, Xt, yt, steps=60, lr=0.05, seed=0, progress=False)
    cmp = select_architecture(fit, Xt, yt, Selection(n_candidates=2, fine_tune=0, bisect=0, hessian="diag",
                                                     progress=False))
    assert cmp.best is not None and clf.widths_ == list(cmp.best.widths)
    with torch.no_grad():
        logits = cmp.best.module(Xt).numpy()
    np.testing.assert_allclose(clf.predict_proba(X), np.exp(logits) / np.exp(logits).sum(1, keepdims=True),
                               rtol=1e-10)
    assert pickle.loads(pickle.dumps(clf)).predict(X).tolist() == clf.predict(X).tolist()


def test_regressor_standardises_the_target() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = 100.0 + 20.0 * np.tanh(X[:, 0] - X[:, 1]) + rng.normal(scale=0.5, size=60)
    reg = GuidedRegressor(**{**SMALL, "steps": 200}).fit(X, y)
    assert reg.y_mean_ == pytest.approx(y.mean()) and reg.y_scale_ == pytest.approx(y.std())
    with torch.no_grad():
        out = reg.module_(torch.as_tensor(X)).numpy()[:, 0]
    np.testing.assert_allclose(reg.predict(X), out * y.std() + y.mean(), rtol=1e-12)
    assert reg.score(X, y) > 0.9


def test_grid_search_and_cross_validation() -> None:
    X, labels = _blobs()
    scores = cross_val_score(GuidedClassifier(**SMALL), X, labels, cv=3)
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))
    grid = GridSearchCV(GuidedClassifier(**SMALL), {"strength": [0.1, 10.0]}, cv=2).fit(X, labels)
    assert grid.best_params_["strength"] in (0.1, 10.0)
    assert set(grid.cv_results_["param_strength"]) == {0.1, 10.0}
    assert grid.predict(X).shape == (60,)
    assert grid.best_estimator_.get_params()["hidden"] == (6,)
    assert clone(grid.best_estimator_).get_params() == grid.best_estimator_.get_params()


def test_invalid_hyperparameters_fail_in_fit() -> None:
    X, labels = _blobs()
    with pytest.raises(ValueError, match="activation must be one of"):
        GuidedClassifier(**{**SMALL, "activation": "swish"}).fit(X, labels)
    with pytest.raises(ValueError, match="hidden must be a non-empty sequence"):
        GuidedClassifier(**{**SMALL, "hidden": (0,)}).fit(X, labels)
    with pytest.raises(ValueError, match="at least two classes"):
        GuidedClassifier(**SMALL).fit(X, np.zeros(60))
