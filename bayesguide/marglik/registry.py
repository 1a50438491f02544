"""The evidence-estimator registry and ``bg.evidence``, which dispatches through it.

An *estimator* is a function ``estimate(fitted, X, y, **options) -> Evidence`` taking a
fitted posterior ([`Fitted`][bayesguide.posterior.Fitted]: a fit or a candidate) and its
prepared training data. Registered with what the rest of the library needs to know
([`EvidenceEstimator`][bayesguide.marglik.registry.EvidenceEstimator]): its name (``[select] evidence`` in experiment
files), a
line of help, whether it needs a variational posterior, and the keyword options it
takes — so [`evidence`][bayesguide.evidence], [`bayesguide.compare`][], experiment files and the CLI's
help all know a new estimator from its one registration.

| name | estimate | options (all also take ``device``) |
|---|---|---|
| laplace | Laplace approximation, GGN curvature | hessian, optimize_prior, max_params, memory_budget |
| elbo | ELBO of the SVI guide (a lower bound) | particles (200), seed, chunk_size |
| iwae | importance-weighted bound, ESS and Pareto k | particles (1000), seed, chunk_size |
| clml | conditional marginal likelihood (Lotfi et al.) | fraction, steps, lr, draws, hessian, optimize_prior, seed |

Every built-in estimator also reads a data loader, batch by batch
(``EvidenceEstimator.reads_batches``): the Laplace curvature and log-likelihood, the
variational log-weights and the CLML's re-fit, curvature and predictive are sums over
the examples, accumulated over the batches.

Every built-in estimator takes ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``; default:
where the fit's or candidate's network is — the CPU for bayesguide's own results): the
network passes run there, the data are moved chunk by chunk, and the estimate comes
back as CPU numbers ([`bayesguide.model.device`][]). An estimator you register takes
``device`` only if it declares it; ``bg.compare`` and the pipeline pass ``device`` only
to estimators that take it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch.utils.data import DataLoader

from bayesguide._options import Registry
from bayesguide.marglik.conditional import clml_estimate
from bayesguide.marglik.laplace import laplace_estimate
from bayesguide.marglik.result import Evidence
from bayesguide.marglik.variational import elbo_estimate, iw_estimate
from bayesguide.model import ArrayLike
from bayesguide.model.batches import Batches, BatchStream, as_batches
from bayesguide.model.device import check_device
from bayesguide.posterior import Fitted

__all__ = [
    "EvidenceEstimator", "estimators", "evidence", "get_estimator", "register_estimator", "unregister_estimator",
]


@dataclass(frozen=True)
class EvidenceEstimator:
    """One registered evidence estimator.

    Attributes
    ----------
    name
        Its name (``method=`` of [`evidence`][bayesguide.evidence], ``[select] evidence``).
    estimate
        ``estimate(fitted, X, y, **options) -> Evidence`` on prepared training data.
    summary
        One line for ``--help`` and the docs.
    needs_posterior
        Whether it needs a variational posterior (an SVI fit, or a candidate cut from one).
    reads_batches
        Whether ``estimate`` also takes a data loader: ``X`` a
        [`BatchStream`][bayesguide.model.batches.BatchStream] and ``y`` ``None``
        (every built-in estimator); [`evidence`][bayesguide.evidence] refuses a loader for
        the others.
    """

    name: str
    estimate: Callable[..., Evidence]
    summary: str
    needs_posterior: bool = False
    reads_batches: bool = False

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


def evidence(fit: Fitted, X: ArrayLike | Batches | DataLoader[Any], y: ArrayLike | None = None, *,
             method: str = "laplace", **options: Any) -> Evidence:
    """Log evidence of the architecture of ``fit`` on its training data ``X, y``.

    Parameters
    ----------
    fit
        A fit or a pruned [`Candidate`][bayesguide.Candidate] (its possibly fine-tuned
        network and its guide). For ``"laplace"`` the weights stand in for the MAP (the
        posterior mean of an SVI fit); ``"elbo"`` and ``"iwae"`` need a variational
        posterior: an SVI fit, or a candidate cut from one.
    X
        The inputs the fit was trained on (checked by fingerprint); or, for data that do
        not fit in memory, a data loader of ``(X, y)`` batches (a ``DataLoader`` over a
        sized dataset, or [`Batches`][bayesguide.model.batches.Batches]), read batch by
        batch by every built-in method: for ``"laplace"`` ``hessian="kron"``, ``"diag"``
        and ``"ekfac"`` accumulate the curvature over the batches (``"full"`` too, within
        its memory budget); ``"elbo"`` / ``"iwae"`` sum each draw's log-likelihood over
        them; ``"clml"`` splits the examples by position in a pass. A fit made from a
        loader is checked by the loader's fingerprint, a fit made from tensors by hashing
        the loader's data in its order (two extra passes; the loader must not shuffle); see
        [`bayesguide.model.batches`][].
    y
        The targets the fit was trained on (checked by fingerprint with ``X``); omitted
        when ``X`` is a data loader.
    method
        A registered estimator: ``"laplace"``, ``"elbo"``, ``"iwae"`` (see the module
        docstring), or one you registered.
    **options
        The estimator's options: for ``"laplace"`` ``hessian`` (``"full"``, ``"kron"``,
        ``"diag"``), ``optimize_prior`` (type-II maximum likelihood of the prior scale
        and a learned Gaussian σ), ``max_params`` (the largest ``"full"`` curvature) and
        ``memory_budget`` (bytes the dense ``"full"`` matrices may take; default half the
        available memory, [`check_dense_memory`][bayesguide.curvature.base.check_dense_memory]);
        for ``"elbo"`` / ``"iwae"`` ``particles`` (default 200 / 1000), ``seed`` and
        ``chunk_size``; for every built-in method ``device``: ``"cpu"``, ``"cuda"``,
        ``"cuda:1"`` or a `torch.device`, where the network passes run (default:
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
    source = as_batches(X, y)
    if source is not None:
        if not estimator.reads_batches:
            readers = [e.name for e in _ESTIMATORS.values() if e.reads_batches]
            raise ValueError(
                f"method={estimator.name!r} needs the data in memory (X, y tensors), not a data loader; "
                f"loaders are read by method={' or '.join(repr(r) for r in readers)}"
            )
        stream = BatchStream(source, fit.model.net, fit.model.likelihood, fit.model.dtype)
        stream.check_fit(fit.data_fingerprint, fit.label)
        return estimator.estimate(fit, stream, None, **options)
    Xt, yt = fit.prepare(X, y)
    return estimator.estimate(fit, Xt, yt, **options)


register_estimator(EvidenceEstimator("laplace", laplace_estimate, "Laplace approximation, GGN curvature",
                                     reads_batches=True))
register_estimator(EvidenceEstimator(
    "elbo", elbo_estimate, "ELBO of the SVI guide (a lower bound), many particles, full data", needs_posterior=True,
    reads_batches=True))
register_estimator(EvidenceEstimator(
    "iwae", iw_estimate, "importance-weighted bound with the SVI guide as proposal, ESS and Pareto k",
    needs_posterior=True, reads_batches=True))
register_estimator(EvidenceEstimator(
    "clml", clml_estimate, "conditional marginal likelihood log p(D_>m | D_<=m) (Lotfi et al.), GLM predictive",
    reads_batches=True))
