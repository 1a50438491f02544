"""Architecture priors (``occam``): priors over architectures, normalised over a candidate set, and their registry.

"Architecture prior" is the prior p(M) over candidate architectures (the ``occam=``
option, ``[select] occam`` in experiment files); it is not the Laplace *Occam factor*
(the ``(P/2) log 2π − ½ log det H`` term inside each candidate's evidence).

The guidance coefficients say how expensive each unit is a priori; the same
coefficients give the prior over architectures:

$$
\\log p(M) = -κ \\sum_{(l, j) \\in M} g_{l,j} - \\log Z,
\\qquad Z = \\sum_{M' \\in \\mathcal C} \\exp\\Big(-κ \\sum_{(l,j) \\in M'} g_{l,j}\\Big),
$$

so architectures that keep a-priori expensive units (the tail under ``linear``
guidance) are penalised, and "simpler" means what the guidance says it means (Rafid &
Sandu, arXiv 2305.18448, read as a prior over models).

**The strength κ.** The default ``kappa="auto"`` sets κ so that the prior's range over
the candidates compared is `AUTO_RANGE` = 1 nat:
``κ = 1 / (max_k cost(M_k) − min_k cost(M_k))``. The Laplace evidence already carries
the Occam factor of each architecture (MacKay 1992); the prior over architectures
only has to break ties, and 1 nat is the evidence's own resolution — a log Bayes factor
below 1 is "not worth more than a bare mention" (Kass & Raftery 1995), and the Laplace
approximation itself is no more accurate than that. So with the default the prior can
only decide between candidates the data cannot tell apart; a choice it makes against
the evidence is flagged ([`bayesguide.comparison.sensitivity`][]). A number sets κ in
nats per unit of cost: ``κ = 1`` with ``linear()`` guidance makes a full 128-unit layer
cost 64.5 nats against an empty one — enough to overrule any data set of a few
thousand examples.

Registered architecture priors ([`register_occam`][bayesguide.comparison.occam.register_occam]; ``[select] occam`` in
experiment
files): ``guidance`` (``Σ g`` over the kept units), ``params`` (the parameter count),
``flops`` (FLOPs per example), ``uniform`` (0). Contract of one: a *cost*
``cost(candidate) -> float`` with ``log p(M) ∝ −κ · cost``. A callable passed as
``occam=`` directly is an unnormalised log prior ``candidate -> float`` instead (κ is
not applied: its cost is minus its value, at κ = 1). Normalisation over the candidate
set is done here.
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
    "AUTO_RANGE", "OccamPrior", "get_occam", "guidance_cost", "occam_costs", "occam_log_prior", "occam_priors",
    "register_occam", "resolve_kappa", "unregister_occam",
]

AUTO_RANGE = 1.0
"""The prior's range over the candidates, in nats, that ``kappa="auto"`` sets."""


@dataclass(frozen=True)
class OccamPrior:
    """One registered architecture prior (``occam``): ``log p(M) = −κ · cost(M) − log Z``."""

    name: str
    cost: Callable[[Candidate], float]
    summary: str


_OCCAM: Registry[OccamPrior] = Registry("architecture prior")


def register_occam(prior: OccamPrior) -> OccamPrior:
    """Add an architecture prior (its name must be new); return it."""
    return _OCCAM.register(prior.name, prior)


def unregister_occam(name: str) -> None:
    """Remove a registered architecture prior (for tests that register a toy one)."""
    _OCCAM.unregister(name)


def occam_priors() -> list[OccamPrior]:
    """The registered architecture priors (``occam``), in registration order."""
    return _OCCAM.values()


def get_occam(name: str) -> OccamPrior:
    """The architecture prior registered as ``name``; the error lists the choices."""
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


def occam_costs(candidates: Sequence[Candidate], occam: str | Callable[[Candidate], float] = "guidance") -> np.ndarray:
    """Every candidate's cost under ``occam`` (``log p(M) = −κ · cost − log Z``).

    For a callable (an unnormalised log prior) the cost is minus its value.
    """
    if len(candidates) == 0:
        raise ValueError("no candidates to put a prior on")
    if callable(occam) and not isinstance(occam, str):
        costs = -np.array([float(occam(c)) for c in candidates])
    else:
        prior = get_occam(occam)
        costs = np.array([float(prior.cost(c)) for c in candidates])
    if not np.isfinite(costs).all():
        raise ValueError("the architecture prior (occam) gave a non-finite value")
    return np.asarray(costs, dtype=np.float64)


def resolve_kappa(kappa: float | str, costs: np.ndarray,
                  occam: str | Callable[[Candidate], float] = "guidance") -> tuple[float, str]:
    """The strength κ to use on ``costs``, and the rule that gave it, in words.

    ``"auto"`` gives ``AUTO_RANGE / (max cost − min cost)`` (0 when every candidate
    costs the same); a number is taken as it is; a callable ``occam`` is used at κ = 1.

    Examples
    --------
    >>> resolve_kappa("auto", np.array([0.0, 2.0, 4.0]))
    (0.25, 'auto: the architecture prior spans 1 nat over the candidates')
    >>> resolve_kappa(2.0, np.array([0.0, 4.0]))
    (2.0, 'as given: the architecture prior spans 8 nats over the candidates')
    """
    if isinstance(kappa, str):
        if kappa != "auto":
            raise ValueError(f"kappa must be 'auto' or a finite number >= 0, got {kappa!r}")
    elif isinstance(kappa, bool) or not (isinstance(kappa, (int, float)) and math.isfinite(kappa) and kappa >= 0):
        raise ValueError(f"kappa must be 'auto' or a finite number >= 0, got {kappa!r}")
    span = float(costs.max() - costs.min()) if costs.size else 0.0
    if callable(occam) and not isinstance(occam, str):
        return 1.0, f"a callable log prior (κ not applied): it spans {span:.3g} nats over the candidates"
    if kappa == "auto":
        value = AUTO_RANGE / span if span > 0 else 0.0
        return value, f"auto: the architecture prior spans {AUTO_RANGE:g} nat over the candidates"
    value = float(kappa)
    return value, f"as given: the architecture prior spans {value * span:.3g} nats over the candidates"


def occam_log_prior(
    candidates: Sequence[Candidate],
    occam: str | Callable[[Candidate], float] = "guidance",
    kappa: float | str = "auto",
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
    >>> bool(abs(np.exp(lp).sum() - 1) < 1e-12), bool(lp[0] < lp[-1]), round(float(lp[-1] - lp[0]), 9)
    (True, True, 1.0)
    """
    costs = occam_costs(candidates, occam)
    value, _ = resolve_kappa(kappa, costs, occam)
    raw = -value * costs
    return np.asarray(raw - logsumexp(raw), dtype=np.float64)


register_occam(OccamPrior("guidance", guidance_cost, "log p(M) = -κ Σ g over kept units"))
register_occam(OccamPrior("params", lambda c: float(c.n_params), "log p(M) = -κ · number of parameters"))
register_occam(OccamPrior("flops", _flops, "log p(M) = -κ · FLOPs per example"))
register_occam(OccamPrior("uniform", lambda c: 0.0, "equal prior probability"))
