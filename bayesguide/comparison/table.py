"""``bg.compare``: posterior probabilities of candidate architectures.

For candidates ``M_1 … M_K`` (usually a pruning path), with evidence ``p(D | M_k)``
([`bayesguide.evidence`][]) and an architecture prior ``p(M_k)``
([`bayesguide.comparison.occam`][]),

$$
p(M_k \\mid D) = \\frac{p(D \\mid M_k)\\, p(M_k)}{\\sum_{k'} p(D \\mid M_{k'})\\, p(M_{k'})},
\\qquad \\log \\mathrm{BF}_k = \\log p(D \\mid M_k) - \\log p(D \\mid M_{\\text{best}}).
$$

A candidate whose evidence fails or is not finite is *marked and excluded* (probability
``NaN``, never ranked first); the others are still compared. Optionally, predictive
comparison by PSIS-LOO ([`bayesguide.comparison.loo`][]).

[`compare`][bayesguide.compare] scores every candidate ([`score_candidate`][bayesguide.comparison.rows.score_candidate])
and then [`assemble`][bayesguide.comparison.table.assemble] s the table; a run that saves each candidate as soon as it
is
scored calls the two itself ([`bayesguide.pipeline`][]).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.special import logsumexp
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from bayesguide.comparison.loo import add_loo
from bayesguide.comparison.occam import AUTO_RANGE, occam_costs, resolve_kappa
from bayesguide.comparison.result import Comparison
from bayesguide.comparison.rows import (
    check_candidates,
    check_reads_batches,
    held_out_data,
    resolve_hessian,
    score_candidate,
)
from bayesguide.comparison.sensitivity import kappa_interval, prior_flags, probabilities
from bayesguide.marglik import get_estimator
from bayesguide.model import ArrayLike, data_fingerprint
from bayesguide.model.batches import Batches, BatchStream, is_batches, open_stream
from bayesguide.model.device import DeviceLike, check_device
from bayesguide.pruning import Candidate

__all__ = ["assemble", "compare"]


def compare(
    candidates: Sequence[Candidate],
    X: ArrayLike | Batches | BatchStream | DataLoader[Any],
    y: ArrayLike | None = None,
    *,
    evidence: str = "laplace",
    occam: str | Callable[[Candidate], float] = "guidance",
    kappa: float | str = "auto",
    hessian: str = "auto",
    optimize_prior: bool = True,
    X_test: ArrayLike | None = None,
    y_test: ArrayLike | None = None,
    loo: bool = False,
    loo_draws: int = 200,
    progress: bool = True,
    evidence_options: dict[str, Any] | None = None,
    device: DeviceLike = None,
) -> Comparison:
    """Score candidate architectures by evidence and architecture prior (and optionally LOO).

    Parameters
    ----------
    candidates
        [`Candidate`][bayesguide.Candidate] s fitted to ``X, y`` (e.g. ``bg.pruning_path``;
        with ``fine_tune > 0`` each candidate is scored at its own re-fitted MAP).
    X
        The training inputs (checked against the candidates' fit); or a data loader of
        the training data (a ``DataLoader``, [`Batches`][bayesguide.model.batches.Batches]
        or a [`BatchStream`][bayesguide.model.batches.BatchStream]), checked likewise
        ([`BatchStream.check_fit`][bayesguide.model.batches.BatchStream.check_fit]) and read
        batch by batch: the evidence (every built-in estimator reads loaders; one registered
        without ``reads_batches`` is refused before any work), the convergence check, the
        metrics and PSIS-LOO
        ([`bayesguide.predictive.loo`][]; without the stacking weights, which need the
        draws in memory) all stream.
    y
        The training targets; omitted for a loader.
    evidence
        A registered evidence estimator: ``"laplace"`` (default), or a variational
        estimate ``"elbo"`` / ``"iwae"`` for candidates that carry a posterior guide (see
        [`bayesguide.evidence`][]).
    occam
        The architecture prior: a name registered in [`bayesguide.comparison.occam`][], or
        a callable unnormalised log prior of a candidate.
    kappa
        The architecture prior's strength: ``"auto"`` (default) makes the prior span 1
        nat over the candidates, so it only breaks the evidence's ties; a number is κ in
        nats per unit of cost (see [`bayesguide.comparison.occam`][]).
    hessian
        Laplace curvature: ``"full"``, ``"kron"``, ``"diag"``, or ``"auto"`` — full when
        the largest candidate has at most 20,000 parameters and its GGN fits the memory and
        time budgets, else kron ([`plan_hessian`][bayesguide.comparison.rows.plan_hessian]; the
        comparison's ``settings["hessian_reason"]`` says why).
    optimize_prior
        Type-II maximum likelihood of each candidate's prior scale (and learned noise);
        the default, since sparse priors are scored under their Gaussian counterpart.
    X_test
        Held-out inputs for the ``test_metric`` column (or a data loader of held-out data).
    y_test
        Held-out targets, with ``X_test`` (omitted for a loader).
    loo
        Add PSIS-LOO columns.
    loo_draws
        Posterior draws per candidate for PSIS-LOO.
    progress
        Show a progress bar over the candidates.
    evidence_options
        Further options of the evidence estimator (e.g. ``{"particles": 500}`` for
        ``"elbo"``); ``hessian`` and ``optimize_prior`` are passed on when it takes them.
    device
        Where the evidence estimates run (``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a
        `torch.device`; default: where each candidate's network is, the CPU for
        candidates cut by bayesguide), passed to estimators that take ``device`` (every
        built-in one). The metrics, the convergence check and the PSIS-LOO draws run on
        the CPU; every number of the table is a CPU number. An unknown or unavailable
        device is a ``ValueError`` before any work.

    Examples
    --------
    >>> import torch, bayesguide as bg
    >>> X = torch.randn(60, 2); y = torch.tanh(X @ torch.tensor([1.0, -1.0])) + 0.1 * torch.randn(60)
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    >>> model = bg.GuidedModel(net, bg.GuidedNormal(1.0), likelihood="gaussian", noise=0.1)
    >>> fit = bg.fit_map(model, X, y, steps=200, lr=0.02, progress=False)
    >>> cmp = bg.compare(bg.pruning_path(fit, X, y, n_candidates=4), X, y, progress=False)
    >>> bool(abs(cmp.table["posterior_prob"].sum() - 1.0) < 1e-9)
    True
    """
    if device is not None:
        check_device(device)
    cands = check_candidates(candidates)
    model = cands[0].model
    stream = open_stream(X, y, model.net, model.likelihood, model.dtype)
    Xt: torch.Tensor | BatchStream
    yt: torch.Tensor | None
    if stream is not None:
        check_reads_batches(evidence)  # before the loader is read
        stream.check_fit(cands[0].data_fingerprint, "the candidates' fit")
        Xt, yt = stream, None
    else:
        Xt, yt = model.prepare_data(X, y)
        if data_fingerprint(Xt, yt) != cands[0].data_fingerprint:
            raise ValueError("X, y are not the data the candidates were fitted to")
    test = held_out_data(model, X_test, y_test)
    resolve_kappa(kappa, occam_costs(cands, occam), occam)  # validates occam and kappa before any work
    hessian, why = resolve_hessian(hessian, cands, Xt)
    estimator = get_estimator(evidence)
    options = {"hessian": hessian, "optimize_prior": optimize_prior, **(evidence_options or {})}
    if device is not None:
        options["device"] = device
    if "progress" in estimator.options:  # the estimator's own bars (the curvature's) follow compare's
        options.setdefault("progress", progress)
    unknown = sorted(set(evidence_options or {}) - set(estimator.options))
    if unknown:
        raise ValueError(f"evidence method {evidence!r} has no option {unknown[0]!r}; it takes: "
                         f"{', '.join(estimator.options)}")
    rows = [
        score_candidate(c, Xt, yt, test, evidence=estimator.name, **options)
        for c in tqdm(cands, desc="evidence", disable=not progress, leave=False)
    ]
    settings = {"evidence": estimator.name, "hessian": hessian, "hessian_reason": why,
                "optimize_prior": optimize_prior}
    return assemble(rows, cands, occam=occam, kappa=kappa, loo=loo, X=X if stream is None else stream, y=y,
                    loo_draws=loo_draws, settings=settings)


def convergence_flags(table: pd.DataFrame, best: str | None) -> list[str]:
    """A flag naming the re-fitted candidates that did not converge (``converged`` column)."""
    if "converged" not in table:
        return []
    mask = table["converged"].eq(False) & table["status"].eq("ok")
    names = [str(n) for n in table.loc[mask, "name"]]
    if not names:
        return []
    where = "including the pick, " if best in names else ""
    return [f"fine-tuning did not converge for {', '.join(names)} ({where}the objective was still falling): "
            f"their evidence is not at a mode and they are ranked on it anyway; raise the fine-tuning steps "
            f"([select] fine_tune in an experiment file, fine_tune= in Python)"]


def assemble(
    rows: Sequence[dict[str, Any]],
    candidates: Sequence[Candidate],
    *,
    occam: str | Callable[[Candidate], float] = "guidance",
    kappa: float | str = "auto",
    loo: bool = False,
    X: ArrayLike | None = None,
    y: ArrayLike | None = None,
    loo_draws: int = 200,
    settings: dict[str, Any] | None = None,
) -> Comparison:
    """Architecture prior, normalised posterior, Bayes factors and flags from scored rows.

    Besides the posterior (``posterior_prob``) the table holds ``evidence_prob``, the
    probabilities under a uniform prior, and ``occam_cost``; ``settings`` records the κ
    used (``kappa``), the rule that set it (``kappa_rule``), the κ interval over which
    the pick stands (``kappa_interval``) and the evidence's own pick (``evidence_best``).
    A flag says when the prior overturns the evidence's pick, or when the pick changes
    within the default range of κ ([`bayesguide.comparison.sensitivity`][]), and
    another names the re-fitted candidates whose fine-tuning did not converge
    (`convergence_flags`).
    """
    cands = check_candidates(candidates)
    table = pd.DataFrame([dict(r) for r in rows])
    costs = occam_costs(cands, occam)
    kappa_value, rule = resolve_kappa(kappa, costs, occam)
    raw = -kappa_value * costs
    table["occam_cost"] = costs
    table["log_prior"] = raw - logsumexp(raw)
    flags = [f"candidate {n} excluded: {s}" for n, s in zip(table["name"], table["status"]) if s != "ok"]
    ok = table["status"].eq("ok").to_numpy() & np.isfinite(table["log_evidence"].to_numpy(dtype=np.float64))
    log_evidence = table["log_evidence"].to_numpy(dtype=np.float64)
    table["log_posterior"] = (table["log_evidence"] + table["log_prior"]).to_numpy()
    table["posterior_prob"] = probs = probabilities(log_evidence, costs, kappa_value, ok)
    table["evidence_prob"] = evidence_probs = probabilities(log_evidence, costs, 0.0, ok)
    best_ev = np.nanmax(log_evidence[ok]) if ok.any() else math.nan
    table["log_bayes_factor"] = table["log_evidence"] - best_ev
    best = cands[int(np.nanargmax(probs))] if ok.any() else None
    selection: dict[str, Any] = {"kappa": kappa_value, "kappa_rule": rule}
    if best is not None:
        pick = int(np.nanargmax(probs))
        selection["kappa_interval"] = list(kappa_interval(log_evidence, costs, pick, ok))
        selection["evidence_best"] = cands[int(np.nanargmax(evidence_probs))].name
        span = float(costs.max() - costs.min())
        flags += prior_flags([c.name for c in cands], log_evidence, costs, kappa_value,
                             AUTO_RANGE / span if span > 0 else 0.0, ok)
    flags += convergence_flags(table, best.name if best is not None else None)
    if loo:
        if X is None or (y is None and not is_batches(X)):
            raise ValueError("loo=True needs X and y (or a data loader X)")
        added = add_loo(table, cands, X, y, loo_draws, best, hessian=str((settings or {}).get("hessian", "diag")))
        flags += added.flags
    all_settings = {"occam": str(occam), **selection, "loo": loo,
                    "metric": cands[0].model.likelihood.metric_name, **(settings or {})}
    if loo:
        all_settings["loo_draws"] = loo_draws
        return Comparison(table=table, candidates=tuple(cands), best=best, flags=tuple(flags),
                          settings=all_settings, loo_table=added.table, idata=added.idata)
    return Comparison(table=table, candidates=tuple(cands), best=best, flags=tuple(flags), settings=all_settings)
