"""scikit-learn estimators that select their own architecture: `GuidedClassifier`, `GuidedRegressor`.

`fit(X, y)` runs the whole bayesguide pipeline on an MLP with the given hidden widths:
the guided fit (`bayesguide.pipeline.fit_model`), the pruning path, the re-fit and the
evidence of every candidate, the architecture prior and the posterior over architectures
(`bayesguide.select_architecture`), and keeps the recommended candidate — the pruned,
smaller network of highest posterior probability — for `predict`. So a grid search or a
cross-validation over the prior's `strength` or the guidance is one `GridSearchCV`
away, and the network found sits in `module_` (its hidden widths in `widths_`, the
whole comparison in `comparison_`).

The estimators follow scikit-learn's conventions: hyperparameters are stored by
`__init__` unchanged and validated in `fit`; inputs are checked by
`sklearn.utils.validation.validate_data`; `score` comes from the mixins (accuracy,
$R^2$); `random_state` makes a fit reproducible (an int; `None` draws fresh
randomness). They pass `sklearn.utils.estimator_checks.check_estimator`.

Layer: above `bayesguide.pipeline`, beside `bayesguide.runner`.

Examples
--------
>>> from sklearn.datasets import make_classification
>>> from bayesguide.sklearn import GuidedClassifier
>>> X, y = make_classification(n_samples=80, n_features=4, random_state=0)
>>> clf = GuidedClassifier(hidden=(6,), steps=150, lr=0.05, n_candidates=3, fine_tune=0, bisect=0)
>>> clf = clf.fit(X, y)
>>> clf.predict_proba(X[:2]).shape, clf.score(X, y) > 0.8, len(clf.widths_)
((2, 2), True, 1)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from bayesguide.comparison import Comparison
from bayesguide.experiment.tables import ACTIVATIONS, NetworkConfig
from bayesguide.guidance import get as get_guidance
from bayesguide.model import GuidedModel
from bayesguide.pipeline import Selection, fit_model, select_architecture
from bayesguide.priors import make_prior

__all__ = ["GuidedClassifier", "GuidedRegressor"]


class _GuidedEstimator(BaseEstimator):
    """What the classifier and the regressor share: the hyperparameters, `fit`'s pipeline, the forward pass.

    Parameters
    ----------
    hidden
        Hidden widths of the MLP before selection (the largest network considered).
    activation
        The hidden activation: `"relu"`, `"tanh"`, `"sigmoid"`, `"gelu"`, `"silu"` or `"elu"`.
    prior
        The unit prior family by its registered name: `"group"` (guided group lasso),
        `"l1"`, `"l2"`, `"sparse_group"`, `"l0"` or `"horseshoe"`.
    strength
        The prior's rate $\\lambda$ (the Bayesian convention: the penalty on the summed
        negative log likelihood).
    guidance
        The guidance profile by name (`"linear"`, `"geometric"`, `"uniform"`, `"partial"`, ...).
    method
        `"map"` (a point estimate) or `"svi"` (a variational posterior).
    steps
        Optimisation steps of the fit of the full network.
    lr
        Learning rate of the fit and of the candidates' re-fits.
    batch_size
        Minibatch size of the fits (`None`: full batch).
    n_candidates
        Points on the pruning path.
    fine_tune
        At most this many MAP steps re-fitting each candidate (0: none).
    bisect
        Rounds of bisection of the path near the best candidate.
    evidence
        The evidence estimator (`"laplace"`, or `"elbo"` / `"iwae"` with `method="svi"`).
    occam
        The architecture prior (`"guidance"`, `"params"`, `"flops"`, `"uniform"`).
    hessian
        The Laplace curvature: `"auto"`, `"full"`, `"kron"` or `"diag"`.
    random_state
        Seed of the initial weights, the fits and the re-fits: an int (reproducible),
        a `numpy.random.RandomState` (a seed is drawn from it) or `None` (fresh randomness).
    device
        Where the fits and the evidence run (`None`: the CPU, `"cuda"`, ...); predictions
        run on the CPU.
    """

    def __init__(
        self,
        hidden: Sequence[int] = (32,),
        activation: str = "tanh",
        prior: str = "group",
        strength: float = 1.0,
        guidance: str = "linear",
        method: str = "map",
        steps: int = 1000,
        lr: float = 0.01,
        batch_size: int | None = None,
        n_candidates: int = 8,
        fine_tune: int = 200,
        bisect: int = 1,
        evidence: str = "laplace",
        occam: str = "guidance",
        hessian: str = "auto",
        random_state: int | np.random.RandomState | None = 0,
        device: str | None = None,
    ) -> None:
        self.hidden = hidden
        self.activation = activation
        self.prior = prior
        self.strength = strength
        self.guidance = guidance
        self.method = method
        self.steps = steps
        self.lr = lr
        self.batch_size = batch_size
        self.n_candidates = n_candidates
        self.fine_tune = fine_tune
        self.bisect = bisect
        self.evidence = evidence
        self.occam = occam
        self.hessian = hessian
        self.random_state = random_state
        self.device = device

    _likelihood = "gaussian"

    def _network(self, n_in: int, n_out: int, seed: int) -> nn.Sequential:
        """The MLP `n_in`-hidden...-`n_out` in float64, initialised from `seed` (global RNG untouched)."""
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {self.activation!r}")
        hidden = [self.hidden] if isinstance(self.hidden, int) else list(self.hidden)
        if not hidden or any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty sequence of positive ints, got {self.hidden!r}")
        config = NetworkConfig(hidden=[int(h) for h in hidden], activation=self.activation)
        with torch.random.fork_rng(devices=[]):  # the experiment file's network, seeded privately
            return config.build(n_in, n_out, seed).double()

    def _select(self, X: np.ndarray, y: np.ndarray, n_out: int) -> None:
        """Fit, select and keep the recommended candidate (`module_`, `widths_`, `comparison_`)."""
        seed = int(check_random_state(self.random_state).randint(2**31 - 1)) if not isinstance(
            self.random_state, (int, np.integer)) else int(self.random_state)
        prior = make_prior(self.prior, self.strength, get_guidance(self.guidance))
        model = GuidedModel(self._network(X.shape[1], n_out, seed), prior, likelihood=self._likelihood)
        Xt = torch.tensor(X, dtype=torch.float64)  # a copy: X may be read-only
        yt = torch.tensor(y)
        fit = fit_model(model, Xt, yt, method=self.method, steps=self.steps, lr=self.lr,
                        batch_size=self.batch_size, seed=seed, progress=False, device=self.device)
        selection = Selection(n_candidates=self.n_candidates, fine_tune=self.fine_tune, fine_tune_lr=self.lr,
                              bisect=self.bisect, batch_size=self.batch_size, seed=seed, evidence=self.evidence,
                              occam=self.occam, hessian=self.hessian, progress=False, device=self.device)
        cmp = select_architecture(fit, Xt, yt, selection)
        if cmp.best is None:
            raise RuntimeError(f"every candidate failed to be scored: {'; '.join(cmp.flags)}")
        self.comparison_: Comparison = cmp
        self.module_: nn.Module = cmp.best.module.eval()
        self.widths_: list[int] = list(cmp.best.widths)

    def _forward(self, X: Any) -> np.ndarray:
        """The recommended network's output (logits or standardised means) on validated `X`."""
        check_is_fitted(self, "module_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        with torch.no_grad():
            return self.module_(torch.tensor(X, dtype=torch.float64)).numpy()


class GuidedClassifier(ClassifierMixin, _GuidedEstimator):
    """An MLP classifier whose hidden widths are chosen by Bayesian model selection.

    A categorical likelihood on the network's logits; `fit` runs the guided fit, the
    pruning path and the comparison of its candidates by evidence and architecture prior
    (Rafid & Sandu, "Neural Network Reduction with Guided Regularizers", 2023; MacKay,
    "A practical Bayesian framework for backpropagation networks", 1992) and keeps the
    candidate of highest posterior probability.

    Parameters
    ----------
    hidden
        Hidden widths of the MLP before selection (default `(32,)`).
    activation
        Hidden activation (default `"tanh"`).
    prior
        Unit prior family (default `"group"`, the guided group lasso).
    strength
        The prior's rate $\\lambda$ (default 1).
    guidance
        Guidance profile (default `"linear"`).
    method
        `"map"` or `"svi"`.
    steps
        Steps of the fit of the full network.
    lr
        Learning rate of the fits.
    batch_size
        Minibatch size (`None`: full batch).
    n_candidates
        Points on the pruning path.
    fine_tune
        Re-fit steps per candidate (0: none).
    bisect
        Bisection rounds near the best candidate.
    evidence
        Evidence estimator (`"laplace"`, `"elbo"`, `"iwae"`).
    occam
        Architecture prior (Occam prior over architectures).
    hessian
        Laplace curvature (`"auto"`, `"full"`, `"kron"`, `"diag"`).
    random_state
        Seed of the weights and the fits (int, `RandomState` or `None`).
    device
        Where the fits run (`None`: the CPU).

    Attributes
    ----------
    classes_
        The class labels, sorted; `predict` returns these.
    n_features_in_
        Number of input features.
    module_
        The recommended (pruned, re-fitted) network; outputs logits.
    widths_
        Its hidden widths.
    comparison_
        The `bayesguide.Comparison` of the candidates.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = GuidedClassifier(hidden=(8,), steps=200, lr=0.05, n_candidates=3, fine_tune=0, bisect=0)
    >>> clf.fit(X, y).score(X, y) > 0.9
    True
    """

    _likelihood = "categorical"

    def fit(self, X: Any, y: Any) -> GuidedClassifier:
        """Fit the full network, select an architecture, keep the recommended one.

        Parameters
        ----------
        X
            Inputs, shape `(n_samples, n_features)`.
        y
            Class labels, shape `(n_samples,)`: any labels (`classes_` maps them).

        Returns
        -------
        GuidedClassifier
            This estimator, fitted.
        """
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError(f"a classifier needs at least two classes in y; got one class, {self.classes_[0]!r}")
        self._select(X, codes.astype(np.int64), int(self.classes_.size))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of the recommended network (softmax of its logits), shape `(n_samples, n_classes)`.

        Parameters
        ----------
        X
            Inputs, shape `(n_samples, n_features)`.
        """
        logits = self._forward(X)
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each example (labels from `classes_`).

        Parameters
        ----------
        X
            Inputs, shape `(n_samples, n_features)`.
        """
        logits = self._forward(X)
        return self.classes_[np.argmax(logits, axis=1)]


class GuidedRegressor(RegressorMixin, _GuidedEstimator):
    """An MLP regressor whose hidden widths are chosen by Bayesian model selection.

    A Gaussian likelihood with learned noise on the standardised target (`y` is centred
    and scaled by its mean and standard deviation before the fit, and predictions are
    mapped back); otherwise as `GuidedClassifier`: `fit` runs the guided fit, the
    pruning path and the comparison of its candidates by evidence and architecture prior, and
    keeps the candidate of highest posterior probability.

    Parameters
    ----------
    hidden
        Hidden widths of the MLP before selection (default `(32,)`).
    activation
        Hidden activation (default `"tanh"`).
    prior
        Unit prior family (default `"group"`, the guided group lasso).
    strength
        The prior's rate $\\lambda$ (default 1).
    guidance
        Guidance profile (default `"linear"`).
    method
        `"map"` or `"svi"`.
    steps
        Steps of the fit of the full network.
    lr
        Learning rate of the fits.
    batch_size
        Minibatch size (`None`: full batch).
    n_candidates
        Points on the pruning path.
    fine_tune
        Re-fit steps per candidate (0: none).
    bisect
        Bisection rounds near the best candidate.
    evidence
        Evidence estimator (`"laplace"`, `"elbo"`, `"iwae"`).
    occam
        Architecture prior (Occam prior over architectures).
    hessian
        Laplace curvature (`"auto"`, `"full"`, `"kron"`, `"diag"`).
    random_state
        Seed of the weights and the fits (int, `RandomState` or `None`).
    device
        Where the fits run (`None`: the CPU).

    Attributes
    ----------
    n_features_in_
        Number of input features.
    y_mean_
        Mean of the training target.
    y_scale_
        Its standard deviation (1 for a constant target).
    module_
        The recommended (pruned, re-fitted) network; outputs the standardised mean.
    widths_
        Its hidden widths.
    comparison_
        The `bayesguide.Comparison` of the candidates.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(80, 2)); y = np.tanh(X[:, 0] - X[:, 1]) + 0.05 * rng.normal(size=80)
    >>> reg = GuidedRegressor(hidden=(6,), steps=300, lr=0.05, n_candidates=3, fine_tune=0, bisect=0)
    >>> reg.fit(X, y).score(X, y) > 0.9
    True
    """

    def fit(self, X: Any, y: Any) -> GuidedRegressor:
        """Fit the full network, select an architecture, keep the recommended one.

        Parameters
        ----------
        X
            Inputs, shape `(n_samples, n_features)`.
        y
            Real targets, shape `(n_samples,)`.

        Returns
        -------
        GuidedRegressor
            This estimator, fitted.
        """
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        self.y_mean_ = float(y.mean())
        scale = float(y.std())
        self.y_scale_ = scale if scale > 0 else 1.0
        self._select(X, (y - self.y_mean_) / self.y_scale_, 1)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """The predictive mean of the recommended network, shape `(n_samples,)`.

        Parameters
        ----------
        X
            Inputs, shape `(n_samples, n_features)`.
        """
        return self._forward(X)[:, 0] * self.y_scale_ + self.y_mean_
