"""The evidence-estimator registry and ``bg.evidence``, which dispatches through it.

An *estimator* is a function ``estimate(fitted, X, y, **options) -> Evidence`` taking a
fitted posterior (:class:`~bayesguide.posterior.Fitted`: a fit or a candidate) and its
prepared training data. Registered with what the rest of the library needs to know
(:class:`EvidenceEstimator`): its name (``[select] evidence`` in experiment files), a
line of help, whether it needs a variational posterior, and the keyword options it
takes — so :func:`evidence`, :func:`bayesguide.compare`, experiment files and the CLI's
help all know a new estimator from its one registration.

=========  ====================================================  ===================================
name       estimate                                              options
=========  ====================================================  ===================================
laplace    Laplace approximation, GGN curvature                  hessian, optimize_prior, max_params,
                                                                 device
elbo       ELBO of the SVI guide (a lower bound)                 particles (200), seed, chunk_size,
                                                                 device
iwae       importance-weighted bound, ESS and Pareto k           particles (1000), seed, chunk_size,
                                                                 device
clml       conditional marginal likelihood (Lotfi et al. 2022)   fraction, steps, lr, draws, hessian,
                                                                 optimize_prior, seed, device
=========  ====================================================  ===================================

Every built-in estimator takes ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``; default:
where the fit's or candidate's network is — the CPU for bayesguide's own results): the
network passes run there, the data are moved chunk by chunk, and the estimate comes
back as CPU numbers (:mod:`bayesguide.model.device`). An estimator you register takes
``device`` only if it declares it; ``bg.compare`` and the pipeline pass ``device`` only
to estimators that take it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bayesguide._options import Registry
from bayesguide.marglik.conditional import clml_estimate
from bayesguide.marglik.laplace import laplace_estimate
from bayesguide.marglik.result import Evidence
from bayesguide.marglik.variational import elbo_estimate, iw_estimate
from bayesguide.model import ArrayLike
from bayesguide.model.device import check_device
from bayesguide.posterior import Fitted

__all__ = ["EvidenceEstimator", "estimators", "evidence", "get_estimator", "register_estimator"]


@dataclass(frozen=True)
class EvidenceEstimator:
    """One registered evidence estimator.

    Attributes
    ----------
    name
        Its name (``method=`` of :func:`evidence`, ``[select] evidence``).
    estimate
        ``estimate(fitted, X, y, **options) -> Evidence`` on prepared training data.
    summary
        One line for ``--help`` and the docs.
    needs_posterior
        Whether it needs a variational posterior (an SVI fit, or a candidate cut from one).
    """

    name: str
    estimate: Callable[..., Evidence]
    summary: str
    needs_posterior: bool = False

    @property
    def options(self) -> tuple[str, ...]:
        """The keyword options ``estimate`` takes (its keyword-only parameters)."""
        params = inspect.signature(self.estimate).parameters.values()
        return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


_ESTIMATORS: Registry[EvidenceEstimator] = Registry("evidence method")


def register_estimator(estimator: EvidenceEstimator) -> EvidenceEstimator:
    """Add an estimator (its name must be new); return it."""
    if not isinstance(estimator, EvidenceEstimator):
        raise TypeError(f"register_estimator takes an EvidenceEstimator, got {type(estimator).__name__}")
    return _ESTIMATORS.register(estimator.name, estimator)


def unregister_estimator(name: str) -> None:
    """Remove a registered estimator (for tests that register a toy one)."""
    _ESTIMATORS.unregister(name)


def estimators() -> list[EvidenceEstimator]:
    """The registered estimators, in registration order."""
    return _ESTIMATORS.values()


def get_estimator(name: str) -> EvidenceEstimator:
    """The estimator registered as ``name``; the error lists the choices."""
    return _ESTIMATORS.get(name)


def evidence(fit: Fitted, X: ArrayLike, y: ArrayLike, *, method: str = "laplace", **options: Any) -> Evidence:
    """Log evidence of the architecture of ``fit`` on its training data ``X, y``.

    Parameters
    ----------
    fit
        A fit or a pruned :class:`~bayesguide.Candidate` (its possibly fine-tuned
        network and its guide). For ``"laplace"`` the weights stand in for the MAP (the
        posterior mean of an SVI fit); ``"elbo"`` and ``"iwae"`` need a variational
        posterior: an SVI fit, or a candidate cut from one.
    X, y
        The data the fit was trained on (checked by fingerprint).
    method
        A registered estimator: ``"laplace"``, ``"elbo"``, ``"iwae"`` (see the module
        docstring), or one you registered.
    **options
        The estimator's options: for ``"laplace"`` ``hessian`` (``"full"``, ``"kron"``,
        ``"diag"``), ``optimize_prior`` (type-II maximum likelihood of the prior scale
        and a learned Gaussian σ) and ``max_params`` (the largest ``"full"`` curvature);
        for ``"elbo"`` / ``"iwae"`` ``particles`` (default 200 / 1000), ``seed`` and
        ``chunk_size``; for every built-in method ``device``: ``"cpu"``, ``"cuda"``,
        ``"cuda:1"`` or a :class:`torch.device`, where the network passes run (default:
        where ``fit.module`` is; the result is CPU numbers either way; an unknown or
        unavailable device is a ``ValueError`` before any work). An option the method
        does not take is an error naming it.

    Returns
    -------
    Evidence

    Examples
    --------
    >>> import torch, bayesguide as bg
    >>> X = torch.randn(40, 3); y = X @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(40)
    >>> model = bg.GuidedModel(torch.nn.Sequential(torch.nn.Linear(3, 1)), bg.GuidedNormal(0.5),
    ...                        likelihood="gaussian", noise=0.1)
    >>> fit = bg.fit_map(model, X, y, steps=300, lr=0.05, progress=False)
    >>> ev = bg.evidence(fit, X, y)
    >>> ev.n_params
    4
    """
    if not isinstance(fit, Fitted):
        raise TypeError(f"evidence() takes a FitResult or a Candidate, got {type(fit).__name__}")
    estimator = get_estimator(method)
    takes = estimator.options
    for key in options:
        if key not in takes:
            users = [e.name for e in _ESTIMATORS.values() if key in e.options]
            by = f"method={' or '.join(repr(u) for u in users)}" if users else "no evidence method"
            raise ValueError(f"{key} is used by {by}, not {estimator.name!r}; {estimator.name!r} takes: "
                             f"{', '.join(takes) or 'no options'}")
    if options.get("device") is not None:
        check_device(options["device"])  # before the data are checked or anything is computed
    Xt, yt = fit.prepare(X, y)
    return estimator.estimate(fit, Xt, yt, **options)


register_estimator(EvidenceEstimator("laplace", laplace_estimate, "Laplace approximation, GGN curvature"))
register_estimator(EvidenceEstimator(
    "elbo", elbo_estimate, "ELBO of the SVI guide (a lower bound), many particles, full data", needs_posterior=True))
register_estimator(EvidenceEstimator(
    "iwae", iw_estimate, "importance-weighted bound with the SVI guide as proposal, ESS and Pareto k",
    needs_posterior=True))
register_estimator(EvidenceEstimator(
    "clml", clml_estimate, "conditional marginal likelihood log p(D_>m | D_<=m) (Lotfi et al.), GLM predictive"))
