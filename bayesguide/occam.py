"""Occam priors over architectures, normalised over a candidate set.

The guidance coefficients say how expensive each unit is a priori; the same
coefficients give the prior over architectures (``DESIGN.md``):

.. math::

    \\log p(M) = -κ \\sum_{(l, j) \\in M} g_{l,j} - \\log Z,
    \\qquad Z = \\sum_{M' \\in \\mathcal C} \\exp\\Big(-κ \\sum_{(l,j) \\in M'} g_{l,j}\\Big),

so architectures that keep a-priori expensive units (the tail under ``linear``
guidance) are penalised, and "simpler" means what the guidance says it means (Rafid &
Sandu, arXiv 2305.18448, read as a prior over models). ``κ`` (default 1, in nats per
unit of guidance) sets how strongly: with ``linear()`` guidance a full 128-unit layer
costs ``κ · 64.5`` nats against an empty one.

Alternatives: by parameter count (``−κ · n_params``), by FLOPs (``−κ · flops``),
uniform (``0``), or any callable ``candidate -> unnormalised log prior``.

Contract of a custom Occam prior: ``callable(candidate) -> float`` (unnormalised log
prior); normalisation over the candidate set is done here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import logsumexp

from bayesguide._options import Option

if TYPE_CHECKING:
    from bayesguide.pruning import Candidate

__all__ = ["OccamPrior", "guidance_cost", "occam_log_prior"]

class OccamPrior(Option):
    """Built-in Occam priors over architectures."""

    #: ``−κ Σ g`` over the kept units (the default)
    GUIDANCE = "guidance"
    #: ``−κ · n_params``
    PARAMS = "params"
    #: ``−κ · flops`` (FLOPs per example)
    FLOPS = "flops"
    #: the same prior probability for every candidate
    UNIFORM = "uniform"

    @property
    def description(self) -> str:
        return {
            "guidance": "log p(M) = -κ Σ g over kept units",
            "params": "log p(M) = -κ · number of parameters",
            "flops": "log p(M) = -κ · FLOPs per example",
            "uniform": "equal prior probability",
        }[self.value]


def guidance_cost(candidate: Candidate) -> float:
    """``Σ g_{l,j}`` over the units a candidate keeps in its prunable layers.

    The candidate's model carries the kept units' coefficients (sliced from the
    original fit's guidance), so this is the sum of those.
    """
    model = candidate.model
    return float(sum(float(model.coefficients[s.name].sum()) for s in model.prunable_sites))


def occam_log_prior(
    candidates: Sequence[Candidate],
    occam: str | OccamPrior | Callable[[Candidate], float] = "guidance",
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
        if not np.isfinite(raw).all():
            raise ValueError("the custom Occam prior returned a non-finite value")
    else:
        kind = OccamPrior.resolve(occam, "Occam prior")
        if kind is OccamPrior.GUIDANCE:
            raw = -kappa * np.array([guidance_cost(c) for c in candidates])
        elif kind is OccamPrior.PARAMS:
            raw = -kappa * np.array([float(c.n_params) for c in candidates])
        elif kind is OccamPrior.FLOPS:
            flops = [c.flops for c in candidates]
            if any(f is None for f in flops):
                raise ValueError(
                    "occam='flops' needs FLOP counts: build the candidates with X (or input_shape) "
                    "so convolutional FLOPs are known"
                )
            raw = -kappa * np.array([float(f) for f in flops if f is not None])
        else:
            raw = np.zeros(len(candidates))
    return np.asarray(raw - logsumexp(raw), dtype=np.float64)
