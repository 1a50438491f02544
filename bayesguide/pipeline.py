"""One pipeline from a model to a comparison: fit → path → fine-tune → score → assemble.

``bayesguide demo``, ``bayesguide run``, the notebooks and ``benchmarks/compression.py``
all run these steps through this module, so they cannot drift apart:

1. :func:`fit_model` — the fit the prior asks for (the fitter registry,
   :func:`bayesguide.infer.fitter_for`: ``fit_map``, ``fit_svi``, ``fit_l0`` or
   ``fit_relevance``);
2. :func:`make_path` — nested candidates (:func:`bayesguide.pruning_path`, ranked by
   the prior family's own unit score unless told otherwise);
3. :func:`refine` — each candidate re-fitted to its own MAP
   (:func:`bayesguide.pruning.fine_tune_fit`), attached with ``with_tuning``;
4. :func:`~bayesguide.comparison.score_candidate` — its evidence (the estimator
   registry) and metrics; a failure marks the candidate, never stops the rest;
5. :func:`~bayesguide.comparison.assemble` — Occam prior, posterior probabilities,
   Bayes factors, LOO, flags.

:func:`select_architecture` runs 2–5 with one :class:`Selection` (:func:`score_candidates`
runs 3–5 on candidates chosen by the caller). Long runs persist as
they go through :class:`Hooks`: the runner (:mod:`bayesguide.runner`) saves each
candidate as soon as it is scored and restores finished ones on resume — it only
persists; every computation happens here.

Examples
--------
>>> import torch, bayesguide as bg
>>> X = torch.randn(60, 2); y = torch.tanh(X @ torch.tensor([1.0, -1.0])) + 0.1 * torch.randn(60)
>>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
>>> model = bg.GuidedModel(net, bg.GuidedGroupLasso(1.0), likelihood="gaussian", noise=0.1)
>>> fit = fit_model(model, X, y, steps=100, lr=0.02, progress=False)
>>> cmp = select_architecture(fit, X, y, Selection(n_candidates=3, fine_tune=20, progress=False))
>>> bool(abs(cmp.table["posterior_prob"].sum() - 1.0) < 1e-9)
True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from bayesguide.comparison import Comparison, assemble, resolve_hessian, score_candidate
from bayesguide.infer import FitResult, OptimSettings, fitter_for
from bayesguide.model import ArrayLike, GuidedModel
from bayesguide.priors import get_family
from bayesguide.pruning import Candidate, fine_tune_fit, pruning_path, with_tuning

__all__ = ["Hooks", "Selection", "fit_model", "make_path", "refine", "score_candidates", "select_architecture"]


def fit_model(model: GuidedModel, X: ArrayLike, y: ArrayLike, optim: OptimSettings | None = None, *,
              method: str = "map", **options: Any) -> FitResult:
    """Fit ``model`` with the fitter its prior asks for (:func:`bayesguide.infer.fitter_for`).

    ``method`` is ``"map"`` (a point estimate) or ``"svi"`` (a variational posterior);
    ``options`` are :class:`~bayesguide.OptimSettings` fields and the fitter's own
    keywords (e.g. ``guide="lowrank"`` for SVI).
    """
    return fitter_for(model.prior, method).fit(model, X, y, optim, **options)


@dataclass(frozen=True)
class Selection:
    """How candidates are cut, re-fitted and scored (the ``[select]`` table of an experiment).

    Attributes
    ----------
    n_candidates, threshold, spacing, min_width
        The pruning path (:func:`bayesguide.pruning_path`); ``threshold=None`` adds no
        threshold point.
    score
        The unit score ranking the path; ``"auto"``: the prior family's own (``"norm"``,
        or the posterior scale for the horseshoe).
    fine_tune, fine_tune_lr, batch_size, seed
        MAP steps re-fitting each candidate from its pruned weights (0: none), their
        learning rate, minibatch and seed.
    evidence, hessian, optimize_prior, evidence_options
        The evidence estimator (a registered name), the Laplace curvature (``"auto"``:
        full up to 20,000 parameters, else KFAC, one choice for the whole path), type-II
        ML of the prior scale, and other options of the estimator.
    occam, kappa
        The Occam prior over architectures and its strength (``"auto"``: the prior
        spans 1 nat over the candidates; see :mod:`bayesguide.comparison.occam`).
    loo, loo_draws
        PSIS-LOO columns from ``loo_draws`` posterior draws per candidate.
    progress
        A progress bar over the candidates.
    """

    n_candidates: int = 8
    threshold: float | None = 1e-3
    spacing: str = "linear"
    min_width: int = 1
    score: str = "auto"
    fine_tune: int = 200
    fine_tune_lr: float = 1e-3
    batch_size: int | None = None
    seed: int | None = 0
    evidence: str = "laplace"
    hessian: str = "auto"
    optimize_prior: bool = True
    evidence_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    occam: str | Callable[[Candidate], float] = "guidance"
    kappa: float | str = "auto"
    loo: bool = False
    loo_draws: int = 200
    progress: bool = True


@dataclass(frozen=True)
class Hooks:
    """How a run persists while :func:`select_architecture` works (both optional).

    ``restore(candidate)`` returns ``(the refined candidate, its scored row)`` of a
    candidate finished in an earlier invocation, or ``None`` to compute it;
    ``scored(candidate, row)`` is called as soon as a candidate is scored.
    """

    restore: Callable[[Candidate], tuple[Candidate, dict[str, Any]] | None] | None = None
    scored: Callable[[Candidate, dict[str, Any]], None] | None = None


def make_path(fit: FitResult, X: ArrayLike, y: ArrayLike, selection: Selection) -> list[Candidate]:
    """The nested candidates of ``fit`` (largest first)."""
    score = get_family(fit.model.prior).score if selection.score == "auto" else selection.score
    return pruning_path(fit, X, y, score=score, n_candidates=selection.n_candidates,
                        threshold=selection.threshold, spacing=selection.spacing, min_width=selection.min_width)


def refine(cand: Candidate, X: ArrayLike, y: ArrayLike, selection: Selection) -> Candidate:
    """``cand`` re-fitted by ``selection.fine_tune`` MAP steps (unchanged when 0)."""
    if not selection.fine_tune:
        return cand
    tuned = fine_tune_fit(cand, X, y, steps=selection.fine_tune, lr=selection.fine_tune_lr,
                          batch_size=selection.batch_size, seed=selection.seed)
    return with_tuning(cand, tuned)


def select_architecture(
    fit: FitResult,
    X: ArrayLike,
    y: ArrayLike,
    selection: Selection | None = None,
    *,
    X_test: ArrayLike | None = None,
    y_test: ArrayLike | None = None,
    hooks: Hooks | None = None,
) -> Comparison:
    """Cut, re-fit and score ``fit``'s pruning path; the posterior over its architectures.

    Parameters
    ----------
    fit
        The fit of the full network (``fit_model``, or any fitter).
    X, y
        Its training data (checked by fingerprint).
    selection
        The settings (default :class:`Selection` ()).
    X_test, y_test
        Held-out data for the ``test_metric`` column.
    hooks
        Persistence callbacks (:class:`Hooks`), for runs that save as they go.

    Returns
    -------
    Comparison
        One row per path candidate, largest first.
    """
    sel = Selection() if selection is None else selection
    Xt, yt = fit.prepare(X, y)
    return score_candidates(make_path(fit, Xt, yt, sel), Xt, yt, sel, X_test=X_test, y_test=y_test, hooks=hooks)


def score_candidates(
    candidates: list[Candidate],
    X: ArrayLike,
    y: ArrayLike,
    selection: Selection | None = None,
    *,
    X_test: ArrayLike | None = None,
    y_test: ArrayLike | None = None,
    hooks: Hooks | None = None,
) -> Comparison:
    """Re-fit (:func:`refine`) and score candidates of one fit, then assemble their comparison.

    The steps 3–5 of the pipeline for candidates chosen by the caller (e.g. every third
    point of a path); :func:`select_architecture` runs them on the whole path.
    """
    sel = Selection() if selection is None else selection
    hooks = Hooks() if hooks is None else hooks
    if not candidates:
        raise ValueError("no candidates to score")
    Xt, yt = candidates[0].prepare(X, y)
    if (X_test is None) != (y_test is None):
        raise ValueError("give both X_test and y_test, or neither")
    test = None if X_test is None else candidates[0].model.prepare_data(X_test, y_test)
    hessian, why = resolve_hessian(sel.hessian, candidates, Xt)
    options = {"hessian": hessian, "optimize_prior": sel.optimize_prior, **sel.evidence_options}
    rows: list[dict[str, Any]] = []
    cands: list[Candidate] = []
    for cand in tqdm(candidates, desc="candidates", disable=not sel.progress, leave=False):
        done = hooks.restore(cand) if hooks.restore is not None else None
        if done is not None:
            cands.append(done[0])
            rows.append(done[1])
            continue
        failure = None
        try:
            cand = refine(cand, Xt, yt, sel)
        except (ValueError, RuntimeError, FloatingPointError) as err:  # one candidate never stops the run
            failure = f"failed: fine-tuning: {err}"
        row = score_candidate(cand, Xt, yt, test, evidence=sel.evidence, **options)
        if failure is not None:
            row["status"], row["log_evidence"] = failure, math.nan
        if hooks.scored is not None:
            hooks.scored(cand, row)
        cands.append(cand)
        rows.append(row)
    settings = {"evidence": sel.evidence, "hessian": hessian, "hessian_reason": why,
                "optimize_prior": sel.optimize_prior}
    return assemble(rows, cands, occam=sel.occam, kappa=sel.kappa, loo=sel.loo, X=Xt, y=yt,
                    loo_draws=sel.loo_draws, settings=settings)
