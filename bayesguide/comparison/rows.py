"""One candidate's row of the comparison: its evidence (through the estimator registry) and metrics.

[`score_candidate`][bayesguide.comparison.rows.score_candidate] never raises for a failing estimate: the row gets
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
from bayesguide.marglik import estimators, get_estimator
from bayesguide.model import GuidedModel
from bayesguide.model.batches import BatchStream, is_batches, open_stream, stream_metric
from bayesguide.posterior import Fitted
from bayesguide.pruning import Candidate, check_convergence, tuning_model

__all__ = [
    "check_candidates", "check_reads_batches", "curvature_cost", "held_out_data", "metric", "plan_hessian",
    "resolve_hessian", "score_candidate",
]

FULL_MAX_PARAMS = 20_000
"""The largest network ``hessian="auto"`` scores with the full GGN."""


def metric(fitted: Fitted, X: torch.Tensor | BatchStream, y: torch.Tensor | None) -> float:
    """The task metric (accuracy or RMSE, [`metric`][bayesguide.likelihoods.Likelihood.metric]) on prepared data.

    ``X`` may be a [`BatchStream`][bayesguide.model.batches.BatchStream] (``y`` ``None``):
    the metric is then accumulated batch by batch ([`stream_metric`][bayesguide.model.batches.stream_metric]).
    """
    if isinstance(X, BatchStream):
        return stream_metric(fitted.module, fitted.model.likelihood, X)
    assert y is not None
    with torch.no_grad():
        out = fitted.module.eval()(X)
    return fitted.model.likelihood.metric(out, y)


def check_candidates(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The candidates as a list, after checking they are distinct candidates of one data set.

    Names (``"w4-3"``, from the widths) identify the rows of a comparison, so they must be
    unique: the same candidate twice, or two candidates with the same widths that keep
    different units, are refused (name both positions).
    """
    cands = list(candidates)
    if not cands:
        raise ValueError("compare() needs at least one candidate; got an empty list")
    seen: dict[str, int] = {}
    for i, c in enumerate(cands):
        if not isinstance(c, Candidate):
            raise TypeError(
                f"candidate {i} is a {type(c).__name__}, not a Candidate; make candidates with "
                f"bg.prune or bg.pruning_path"
            )
        j = seen.setdefault(c.name, i)
        if j != i:
            other = cands[j]
            if c is other or (c.kept == other.kept and c.fit is other.fit and c.tuned is other.tuned):
                raise ValueError(f"candidates {j} and {i} are the same candidate ({c.name}): pass each one once")
            raise ValueError(
                f"candidates {j} and {i} are both {c.name} (the same widths) but keep different units: a "
                f"comparison's rows are named by their widths — compare them in separate calls"
            )
    prints = {c.data_fingerprint for c in cands}
    if len(prints) > 1:
        raise ValueError("the candidates were fitted to different data; compare them on one data set")
    return cands


FULL_MEMORY_BUDGET = 4 * 2**30
"""What ``hessian="auto"`` may spend on the full GGN: peak memory (bytes) and multiply-adds."""
FULL_FLOP_BUDGET = 2e12


def curvature_cost(structure: str, n_params: int, n_data: int, n_outputs: int) -> tuple[float, float]:
    """Rough peak memory (bytes) and multiply-adds of a curvature for ``P`` parameters.

    ``full``: the ``P × P`` GGN, its Cholesky factor and eigen-decomposition workspace
    (≈ ``4 · 8 P²`` bytes) and ``N C P² + P³`` multiply-adds; ``diag`` and ``kron``: a few
    copies of the weights (``kron``'s factors are per layer) and ``N C P`` multiply-adds.
    """
    P, N, C = float(n_params), float(n_data), float(max(n_outputs, 1))
    if structure == HessianStructure.FULL.value:
        return 32.0 * P * P, N * C * P * P + P**3
    return 64.0 * P, 4.0 * N * C * P


def resolve_hessian(hessian: str, candidates: Sequence[Candidate], X: torch.Tensor | BatchStream) -> tuple[str, str]:
    """The curvature a comparison of ``candidates`` on prepared inputs ``X`` uses, and why
    ([`plan_hessian`][bayesguide.comparison.rows.plan_hessian] for the largest candidate).

    ``X`` may be a [`BatchStream`][bayesguide.model.batches.BatchStream]: its ``n`` and
    number of outputs are known without a pass over it.
    """
    if isinstance(X, BatchStream):
        return plan_hessian(hessian, max(c.n_params for c in candidates), X.n, int(X.out_dim))
    with torch.no_grad():
        n_outputs = int(candidates[0].module.eval()(X[:1]).shape[-1])
    return plan_hessian(hessian, max(c.n_params for c in candidates), int(X.shape[0]), n_outputs)


def plan_hessian(hessian: str, n_params: int, n_data: int, n_outputs: int) -> tuple[str, str]:
    """The curvature for networks up to ``n_params`` parameters, and why, in words.

    ``"auto"`` takes ``"full"`` (exact) when the largest network has at most 20,000
    parameters *and* the full GGN fits the budgets — about ``32 P²`` bytes at most 4 GiB,
    ``N C P² + P³`` multiply-adds at most 2·10¹² (minutes on a laptop) — and ``"kron"``
    otherwise; one choice for the whole path, so every candidate is scored alike.
    An explicit ``"full"`` beyond 20,000 parameters is refused.

    Examples
    --------
    >>> plan_hessian("auto", 26_122, 1348, 10)[1]
    'auto chose kron: the full GGN of 26,122 parameters exceeds 20,000 parameters'
    """
    if hessian != "auto":
        structure = HessianStructure.resolve(hessian, "hessian structure").value
        if structure == HessianStructure.FULL.value and n_params > FULL_MAX_PARAMS:
            raise ValueError(
                f"hessian='full' needs a {n_params:,}×{n_params:,} matrix ({n_params:,} parameters > "
                f"{FULL_MAX_PARAMS:,}); use 'kron' or 'diag', or 'auto'"
            )
        return structure, f"{structure} as asked"
    memory, flops = curvature_cost("full", n_params, n_data, n_outputs)
    if n_params > FULL_MAX_PARAMS:
        why = f"exceeds {FULL_MAX_PARAMS:,} parameters"
    elif memory > FULL_MEMORY_BUDGET:
        why = f"needs ~{memory / 2**30:.1f} GiB (budget {FULL_MEMORY_BUDGET / 2**30:.0f} GiB)"
    elif flops > FULL_FLOP_BUDGET:
        why = f"needs ~{flops:.1e} multiply-adds on {n_data:,} examples (budget {FULL_FLOP_BUDGET:.0e})"
    else:
        return "full", (f"auto chose full: {n_params:,} parameters, ~{memory / 2**30:.2f} GiB and "
                        f"~{flops:.1e} multiply-adds on {n_data:,} examples")
    return "kron", f"auto chose kron: the full GGN of {n_params:,} parameters {why}"


def held_out_data(model: GuidedModel, X_test: Any, y_test: Any) -> tuple[torch.Tensor, torch.Tensor] | tuple[
        BatchStream, None] | None:
    """Held-out data for the ``test_metric`` column: prepared tensors, a stream for a data loader, or ``None``.

    ``X_test`` may be a data loader (``y_test`` omitted): its metric is then streamed.
    Otherwise give both ``X_test`` and ``y_test`` or neither (a ``ValueError``).
    """
    if is_batches(X_test):
        stream = open_stream(X_test, y_test, model.net, model.likelihood, model.dtype)
        assert stream is not None
        return stream, None
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    return None if X_test is None else model.prepare_data(X_test, y_test)


def check_reads_batches(evidence: str) -> None:
    """A ``ValueError`` unless the estimator ``evidence`` reads a data loader (before any work)."""
    if not get_estimator(evidence).reads_batches:
        readers = [e.name for e in estimators() if e.reads_batches]
        raise ValueError(
            f"evidence={evidence!r} needs the data in memory (X, y tensors), not a data loader; loaders are read "
            f"by evidence={' or '.join(repr(r) for r in readers)}"
        )


def score_candidate(
    cand: Candidate,
    X: torch.Tensor | BatchStream,
    y: torch.Tensor | None,
    test: tuple[torch.Tensor, torch.Tensor] | tuple[BatchStream, None] | None = None,
    *,
    evidence: str = "laplace",
    **options: Any,
) -> dict[str, Any]:
    """One candidate's table row (without the architecture prior and the normalised columns).

    ``X, y`` are prepared tensors, or ``X`` a [`BatchStream`][bayesguide.model.batches.BatchStream]
    checked against the candidate and ``y`` ``None`` (then the estimator must read batches,
    ``EvidenceEstimator.reads_batches``; the convergence check and the metrics stream too);
    ``test`` likewise. ``options`` are evidence options, passed on to the
    estimator when it takes them (e.g. ``hessian="full"``, ``optimize_prior=True``,
    ``device="cuda"``: every built-in estimator runs its network passes there).
    """
    estimator = get_estimator(evidence)
    if isinstance(X, BatchStream):
        check_reads_batches(evidence)
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
    if cand.tuned is not None:  # the candidate was re-fitted: did it reach a mode?
        row.update(check_convergence(cand.tuned, X, y, model=tuning_model(cand)).columns())
    row["train_metric"] = metric(cand, X, y)
    if test is not None:
        row["test_metric"] = metric(cand, *test)
    return row
