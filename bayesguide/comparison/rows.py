"""One candidate's row of the comparison: its evidence (through the estimator registry) and metrics.

:func:`score_candidate` never raises for a failing estimate: the row gets
``log_evidence = NaN`` and a ``status`` that says why, so one candidate never stops the
rest. The evidence options given are passed to the estimator only if it takes them
(``hessian`` and ``optimize_prior`` mean something to ``"laplace"``, ``particles`` to
``"elbo"`` / ``"iwae"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from bayesguide.curvature import HessianStructure
from bayesguide.marglik import get_estimator
from bayesguide.posterior import Fitted
from bayesguide.pruning import Candidate

__all__ = ["check_candidates", "metric", "resolve_hessian", "score_candidate"]

#: the largest network ``hessian="auto"`` scores with the full GGN
FULL_MAX_PARAMS = 20_000


def metric(fitted: Fitted, X: torch.Tensor, y: torch.Tensor) -> float:
    """The task metric (accuracy or RMSE, :meth:`~bayesguide.likelihoods.Likelihood.metric`) on prepared data."""
    with torch.no_grad():
        out = fitted.module.eval()(X)
    return fitted.model.likelihood.metric(out, y)


def check_candidates(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The candidates as a list, after checking they are candidates of one data set."""
    cands = list(candidates)
    if not cands:
        raise ValueError("compare() needs at least one candidate; got an empty list")
    for i, c in enumerate(cands):
        if not isinstance(c, Candidate):
            raise TypeError(
                f"candidate {i} is a {type(c).__name__}, not a Candidate; make candidates with "
                f"bg.prune or bg.pruning_path"
            )
    prints = {c.data_fingerprint for c in cands}
    if len(prints) > 1:
        raise ValueError("the candidates were fitted to different data; compare them on one data set")
    return cands


def resolve_hessian(hessian: str, candidates: Sequence[Candidate]) -> str:
    """``"auto"``: ``"full"`` if the largest candidate has ≤ 20,000 parameters, else ``"kron"``."""
    if hessian == "auto":
        return "full" if max(c.n_params for c in candidates) <= FULL_MAX_PARAMS else HessianStructure.KRON.value
    return HessianStructure.resolve(hessian, "hessian structure").value


def score_candidate(
    cand: Candidate,
    X: torch.Tensor,
    y: torch.Tensor,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    evidence: str = "laplace",
    **options: Any,
) -> dict[str, Any]:
    """One candidate's table row (without the Occam prior and the normalised columns).

    ``X, y`` are prepared tensors; ``options`` are evidence options, passed on to the
    estimator when it takes them (e.g. ``hessian="full"``, ``optimize_prior=True``).
    """
    estimator = get_estimator(evidence)
    takes = estimator.options
    kwargs = {k: v for k, v in options.items() if k in takes}
    row: dict[str, Any] = {"name": cand.name, "widths": list(cand.widths), "n_params": cand.n_params,
                           "flops": cand.flops}
    try:
        ev = estimator.estimate(cand, X, y, **kwargs)
        log_ev = float(ev.log_evidence)
        row.update(ev.columns())
        row["status"] = "ok" if math.isfinite(log_ev) else "non-finite evidence"
    except (ValueError, RuntimeError, torch.linalg.LinAlgError) as err:
        log_ev, row["status"] = math.nan, f"failed: {err}"
    row["log_evidence"] = log_ev if row["status"] == "ok" else math.nan
    row["train_metric"] = metric(cand, X, y)
    if test is not None:
        row["test_metric"] = metric(cand, *test)
    return row
