"""``bg.compare``: posterior probabilities of candidate architectures.

For candidates ``M_1 … M_K`` (usually a pruning path), with evidence ``p(D | M_k)``
(:func:`bayesguide.evidence`) and an Occam prior ``p(M_k)``
(:mod:`bayesguide.occam`),

.. math::

    p(M_k \\mid D) = \\frac{p(D \\mid M_k)\\, p(M_k)}{\\sum_{k'} p(D \\mid M_{k'})\\, p(M_{k'})},
    \\qquad \\log \\mathrm{BF}_k = \\log p(D \\mid M_k) - \\log p(D \\mid M_{\\text{best}}).

A candidate whose evidence fails or is not finite is *marked and excluded* (probability
``NaN``, never ranked first); the others are still compared. Optionally, predictive
comparison by PSIS-LOO (Vehtari, Gelman & Gabry 2017) through ArviZ, with stacking
weights; the comparison flags Pareto ``k > 0.7`` and a disagreement between the
evidence's and LOO's winners.

Compute, then report: :func:`compare` returns a :class:`Comparison` whose ``table`` the
reports only read.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.special import logsumexp
from tqdm.auto import tqdm

from bayesguide.infer.result import data_fingerprint
from bayesguide.likelihoods import Likelihood
from bayesguide.marglik.laplace import HessianStructure, laplace_evidence
from bayesguide.model import ArrayLike
from bayesguide.occam import OccamPrior, occam_log_prior
from bayesguide.pruning import Candidate

__all__ = ["Comparison", "assemble", "compare", "resolve_hessian", "score_candidate"]

#: Pareto k above which PSIS-LOO estimates are unreliable (Vehtari et al. 2017)
PARETO_K_LIMIT = 0.7


@dataclass(frozen=True)
class Comparison:
    """The outcome of :func:`compare`.

    Attributes
    ----------
    table
        One row per candidate, in the order given: ``name``, ``widths``, ``n_params``,
        ``flops``, ``log_evidence``, ``log_prior``, ``log_posterior`` (unnormalised),
        ``posterior_prob``, ``log_bayes_factor`` (against the best evidence), the train
        (and test) metric, ``status``; with Laplace evidence also ``prior_scale``,
        ``substituted`` and ``prior_used`` (the Gaussian prior the evidence used:
        ``"own"``, ``"counterpart"`` or ``"uniform"``, see
        :mod:`bayesguide.marglik.laplace`); with LOO also ``elpd_loo``, ``elpd_se``,
        ``pareto_k_max``, ``stacking_weight``.
    candidates
        The candidates, in table order.
    best
        The candidate of highest posterior probability (``None`` if every one failed).
    flags
        Warnings from the diagnostics, in words.
    """

    table: pd.DataFrame
    candidates: tuple[Candidate, ...]
    best: Candidate | None
    flags: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def probabilities(self) -> np.ndarray:
        return self.table["posterior_prob"].to_numpy()

    def __str__(self) -> str:
        cols = [c for c in ("name", "n_params", "log_evidence", "log_prior", "posterior_prob",
                            "log_bayes_factor", "train_metric", "test_metric", "elpd_loo",
                            "pareto_k_max", "status") if c in self.table]
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            body = self.table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}")
        best = "none (every candidate failed)" if self.best is None else self.best.name
        lines = [f"Comparison of {len(self.candidates)} candidates; best: {best}", body]
        lines += [f"! {f}" for f in self.flags]
        return "\n".join(lines)


def _metric(candidate: Candidate, X: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy (categorical, bernoulli) or RMSE (gaussian) of the candidate's network."""
    module = candidate.tuned.module if candidate.tuned is not None else candidate.module
    with torch.no_grad():
        out = module.eval()(X)
    likelihood = candidate.model.likelihood
    if likelihood is Likelihood.CATEGORICAL:
        return float((out.argmax(1) == y).double().mean())
    if likelihood is Likelihood.BERNOULLI:
        return float(((out > 0).to(y.dtype) == y).double().mean())
    return float((out - y).pow(2).mean().sqrt())


def _check_candidates(candidates: Sequence[Candidate]) -> list[Candidate]:
    cands = list(candidates)
    if not cands:
        raise ValueError("compare() needs at least one candidate; got an empty list")
    for i, c in enumerate(cands):
        if not isinstance(c, Candidate):
            raise TypeError(
                f"candidate {i} is a {type(c).__name__}, not a Candidate; make candidates with "
                f"bg.prune or bg.pruning_path"
            )
    prints = {c.fit.data_fingerprint for c in cands}
    if len(prints) > 1:
        raise ValueError("the candidates were fitted to different data; compare them on one data set")
    return cands


def _laplace(candidate: Candidate, X: torch.Tensor, y: torch.Tensor, hessian: str,
             optimize_prior: bool) -> tuple[float, dict[str, Any]]:
    source = candidate.tuned if candidate.tuned is not None else None
    model = source.model if source is not None else candidate.model
    module = source.module if source is not None else candidate.module
    noise = source.noise if source is not None else candidate.fit.noise
    ev = laplace_evidence(model, module, X, y, hessian=hessian, optimize_prior=optimize_prior, noise=noise)
    return ev.log_evidence, {"prior_scale": ev.prior_scale, "substituted": ev.substituted,
                             "prior_used": ev.prior_used}


def compare(
    candidates: Sequence[Candidate],
    X: ArrayLike,
    y: ArrayLike,
    *,
    evidence: str = "laplace",
    occam: str | OccamPrior | Callable[[Candidate], float] = "guidance",
    kappa: float = 1.0,
    hessian: str = "auto",
    optimize_prior: bool = True,
    X_test: ArrayLike | None = None,
    y_test: ArrayLike | None = None,
    loo: bool = False,
    loo_draws: int = 200,
    progress: bool = True,
) -> Comparison:
    """Score candidate architectures by evidence and Occam prior (and optionally LOO).

    Parameters
    ----------
    candidates
        :class:`~bayesguide.Candidate` s fitted to ``X, y`` (e.g. ``bg.pruning_path``;
        with ``fine_tune > 0`` each candidate is scored at its own re-fitted MAP).
    X, y
        The training data (checked against the candidates' fit).
    evidence
        ``"laplace"`` (default), or a variational estimate ``"elbo"`` / ``"iwae"`` for
        candidates that carry a posterior guide (see :func:`bayesguide.evidence`).
    occam, kappa
        The Occam prior (:mod:`bayesguide.occam`) and its strength.
    hessian
        Laplace curvature; ``"auto"`` takes ``"full"`` when the largest candidate has at
        most 20,000 parameters, else the cheapest structured one available.
    optimize_prior
        Type-II maximum likelihood of each candidate's prior scale (and learned noise);
        the default, since sparse priors are scored under their Gaussian counterpart.
    X_test, y_test
        Held-out data for the ``test_metric`` column.
    loo, loo_draws
        Add PSIS-LOO columns from ``loo_draws`` posterior draws per candidate.

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
    cands = _check_candidates(candidates)
    Xt, yt = cands[0].fit.model.prepare_data(X, y)
    if data_fingerprint(Xt, yt) != cands[0].fit.data_fingerprint:
        raise ValueError("X, y are not the data the candidates were fitted to")
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    test = None if X_test is None else cands[0].fit.model.prepare_data(X_test, y_test)
    occam_log_prior(cands, occam, kappa)  # validates occam and kappa before any work
    hessian = resolve_hessian(hessian, cands)
    check_evidence_method(evidence)
    rows = [
        score_candidate(c, Xt, yt, test, evidence=evidence, hessian=hessian, optimize_prior=optimize_prior)
        for c in tqdm(cands, desc="evidence", disable=not progress, leave=False)
    ]
    settings = {"evidence": evidence, "hessian": hessian, "optimize_prior": optimize_prior}
    return assemble(rows, cands, occam=occam, kappa=kappa, loo=loo, X=X, y=y, loo_draws=loo_draws,
                    settings=settings)


def resolve_hessian(hessian: str, candidates: Sequence[Candidate]) -> str:
    """``"auto"``: ``"full"`` if the largest candidate has ≤ 20,000 parameters, else a structured one."""
    if hessian == "auto":
        structured = "kron" if "kron" in HessianStructure.choices() else "diag"
        return "full" if max(c.n_params for c in candidates) <= 20_000 else structured
    return HessianStructure.resolve(hessian, "hessian structure").value


def check_evidence_method(evidence: str) -> None:
    if evidence not in ("laplace", "elbo", "iwae"):
        raise ValueError(f"unknown evidence method {evidence!r}; choose one of: laplace, elbo, iwae")


def score_candidate(
    cand: Candidate,
    X: torch.Tensor,
    y: torch.Tensor,
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    evidence: str = "laplace",
    hessian: str = "full",
    optimize_prior: bool = True,
) -> dict[str, Any]:
    """One candidate's table row (without the Occam prior and the normalised columns).

    ``X, y`` are prepared tensors. A failing evidence is caught: the row gets
    ``log_evidence = NaN`` and ``status`` says why, so one candidate never stops the rest.
    """
    row: dict[str, Any] = {"name": cand.name, "widths": list(cand.widths), "n_params": cand.n_params,
                           "flops": cand.flops}
    try:
        if evidence == "laplace":
            log_ev, extra = _laplace(cand, X, y, hessian, optimize_prior)
        else:
            from bayesguide.marglik import evidence as evidence_fn

            ev = evidence_fn(cand, X, y, method=evidence)
            log_ev, extra = float(ev.log_evidence), {}
        row.update(extra)
        row["status"] = "ok" if math.isfinite(log_ev) else "non-finite evidence"
    except (ValueError, RuntimeError, torch.linalg.LinAlgError) as err:
        log_ev, row["status"] = math.nan, f"failed: {err}"
    row["log_evidence"] = log_ev if row["status"] == "ok" else math.nan
    row["train_metric"] = _metric(cand, X, y)
    if test is not None:
        row["test_metric"] = _metric(cand, *test)
    return row


def assemble(
    rows: Sequence[dict[str, Any]],
    candidates: Sequence[Candidate],
    *,
    occam: str | OccamPrior | Callable[[Candidate], float] = "guidance",
    kappa: float = 1.0,
    loo: bool = False,
    X: ArrayLike | None = None,
    y: ArrayLike | None = None,
    loo_draws: int = 200,
    settings: dict[str, Any] | None = None,
) -> Comparison:
    """Occam prior, normalised posterior, Bayes factors and flags from scored rows."""
    cands = list(candidates)
    table = pd.DataFrame([dict(r) for r in rows])
    table["log_prior"] = occam_log_prior(cands, occam, kappa)
    flags = [f"candidate {n} excluded: {s}" for n, s in zip(table["name"], table["status"]) if s != "ok"]
    ok = table["status"].eq("ok").to_numpy()
    log_post = (table["log_evidence"] + table["log_prior"]).to_numpy()
    probs = np.full(len(cands), np.nan)
    if ok.any():
        probs[ok] = np.exp(log_post[ok] - logsumexp(log_post[ok]))
    table["log_posterior"] = log_post
    table["posterior_prob"] = probs
    best_ev = np.nanmax(table["log_evidence"].to_numpy()) if ok.any() else math.nan
    table["log_bayes_factor"] = table["log_evidence"] - best_ev
    best = cands[int(np.nanargmax(probs))] if ok.any() else None
    if loo:
        if X is None or y is None:
            raise ValueError("loo=True needs X and y")
        flags += _add_loo(table, cands, X, y, loo_draws, best)
    likelihood = cands[0].fit.model.likelihood
    all_settings = {"occam": str(occam), "kappa": kappa, "loo": loo,
                    "metric": "rmse" if likelihood is Likelihood.GAUSSIAN else "accuracy", **(settings or {})}
    return Comparison(table=table, candidates=tuple(cands), best=best, flags=tuple(flags), settings=all_settings)


def _add_loo(table: pd.DataFrame, cands: list[Candidate], X: ArrayLike, y: ArrayLike, draws: int,
             best: Candidate | None) -> list[str]:
    """PSIS-LOO columns and stacking weights (ArviZ); returns the diagnostic flags."""
    from bayesguide._arviz import arviz
    from bayesguide.predictive import loo as psis_loo

    az = arviz()

    flags: list[str] = []
    idatas: dict[str, Any] = {}
    elpd, se, kmax = [], [], []
    for cand in cands:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # high Pareto k: flagged below instead
            res = psis_loo(cand, X, y, draws=draws)
        elpd.append(res.elpd)
        se.append(res.se)
        kmax.append(float(np.max(res.pareto_k)))
        idatas[cand.name] = res.idata
        if res.n_high_k:
            flags.append(
                f"candidate {cand.name}: {res.n_high_k} observations with Pareto k > {PARETO_K_LIMIT}"
            )
    table["elpd_loo"], table["elpd_se"], table["pareto_k_max"] = elpd, se, kmax
    if len(idatas) > 1:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            weights = az.compare(idatas, ic="loo", method="stacking")["weight"]
        table["stacking_weight"] = [float(weights[c.name]) for c in cands]
    loo_best = cands[int(np.argmax(elpd))]
    if best is not None and loo_best.name != best.name:
        flags.append(f"evidence prefers {best.name} but PSIS-LOO prefers {loo_best.name}")
    return flags
