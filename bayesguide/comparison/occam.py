"""Occam priors over architectures, normalised over a candidate set, and their registry.

The guidance coefficients say how expensive each unit is a priori; the same
coefficients give the prior over architectures:

.. math::

    \\log p(M) = -κ \\sum_{(l, j) \\in M} g_{l,j} - \\log Z,
    \\qquad Z = \\sum_{M' \\in \\mathcal C} \\exp\\Big(-κ \\sum_{(l,j) \\in M'} g_{l,j}\\Big),

so architectures that keep a-priori expensive units (the tail under ``linear``
guidance) are penalised, and "simpler" means what the guidance says it means (Rafid &
Sandu, arXiv 2305.18448, read as a prior over models). ``κ`` (default 1, in nats per
unit of guidance) sets how strongly: with ``linear()`` guidance a full 128-unit layer
costs ``κ · 64.5`` nats against an empty one.

Registered Occam priors (:func:`register_occam`; ``[select] occam`` in experiment
files): ``guidance`` (``Σ g`` over the kept units), ``params`` (the parameter count),
``flops`` (FLOPs per example), ``uniform`` (0). Contract of one: a *cost*
``cost(candidate) -> float`` with ``log p(M) ∝ −κ · cost``. A callable passed as
``occam=`` directly is an unnormalised log prior ``candidate -> float`` instead (κ is
not applied). Normalisation over the candidate set is done here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from bayesguide._options import Registry
from bayesguide.pruning import Candidate

__all__ = [
    "OccamPrior", "get_occam", "guidance_cost", "occam_log_prior", "occam_priors", "register_occam", "unregister_occam",
]


@dataclass(frozen=True)
class OccamPrior:
    """One registered Occam prior: ``log p(M) = −κ · cost(M) − log Z``."""

    name: str
    cost: Callable[[Candidate], float]
    summary: str


_OCCAM: Registry[OccamPrior] = Registry("Occam prior")


def register_occam(prior: OccamPrior) -> OccamPrior:
    """Add an Occam prior (its name must be new); return it."""
    return _OCCAM.register(prior.name, prior)


def unregister_occam(name: str) -> None:
    """Remove a registered Occam prior (for tests that register a toy one)."""
    _OCCAM.unregister(name)


def occam_priors() -> list[OccamPrior]:
    """The registered Occam priors, in registration order."""
    return _OCCAM.values()


def get_occam(name: str) -> OccamPrior:
    """The Occam prior registered as ``name``; the error lists the choices."""
    return _OCCAM.get(name)


def guidance_cost(candidate: Candidate) -> float:
    """``Σ g_{l,j}`` over the units a candidate keeps in its prunable layers.

    The candidate's model carries the kept units' coefficients (sliced from the
    original fit's guidance), so this is the sum of those.
    """
    model = candidate.model
    return float(sum(float(model.coefficients[s.name].sum()) for s in model.prunable_sites))


def _flops(candidate: Candidate) -> float:
    if candidate.flops is None:
        raise ValueError(
            "occam='flops' needs FLOP counts: build the candidates with X (or input_shape) "
            "so convolutional FLOPs are known"
        )
    return float(candidate.flops)


def occam_log_prior(
    candidates: Sequence[Candidate],
    occam: str | Callable[[Candidate], float] = "guidance",
    kappa: float = 1.0,
) -> np.ndarray:
    """Normalised log prior ``log p(M)`` of every candidate (log-probabilities summing to 1).

    Examples
    --------
    >>> import torch, bayesguide as bg
    >>> X, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> fit = bg.fit_map(bg.GuidedModel(net, bg.GuidedNormal(0.1)), X, y, steps=5, progress=False)
    >>> path = bg.pruning_path(fit, X, y, n_candidates=4)
    >>> lp = occam_log_prior(path)
    >>> bool(abs(np.exp(lp).sum() - 1) < 1e-12), bool(lp[0] < lp[-1])
    (True, True)
    """
    if len(candidates) == 0:
        raise ValueError("no candidates to put a prior on")
    if not (isinstance(kappa, (int, float)) and math.isfinite(kappa) and kappa >= 0):
        raise ValueError(f"kappa must be a finite number >= 0, got {kappa!r}")
    if callable(occam) and not isinstance(occam, str):
        raw = np.array([float(occam(c)) for c in candidates])
    else:
        prior = get_occam(occam)
        raw = -kappa * np.array([float(prior.cost(c)) for c in candidates])
    if not np.isfinite(raw).all():
        raise ValueError("the Occam prior gave a non-finite value")
    return np.asarray(raw - logsumexp(raw), dtype=np.float64)


register_occam(OccamPrior("guidance", guidance_cost, "log p(M) = -κ Σ g over kept units"))
register_occam(OccamPrior("params", lambda c: float(c.n_params), "log p(M) = -κ · number of parameters"))
register_occam(OccamPrior("flops", _flops, "log p(M) = -κ · FLOPs per example"))
register_occam(OccamPrior("uniform", lambda c: 0.0, "equal prior probability"))
