"""One pipeline from a model to a comparison: fit → path → fine-tune → score → assemble.

``bayesguide demo``, ``bayesguide run``, the notebooks and ``benchmarks/compression.py``
all run these steps through this module, so they cannot drift apart:

1. [`fit_model`][bayesguide.pipeline.fit_model] — the fit the prior asks for (the fitter registry,
   [`bayesguide.infer.fitter_for`][]: ``fit_map``, ``fit_svi``, ``fit_l0`` or
   ``fit_relevance``);
2. [`make_path`][bayesguide.pipeline.make_path] — nested candidates ([`bayesguide.pruning_path`][], ranked by
   the prior family's own unit score unless told otherwise);
3. [`refine`][bayesguide.pipeline.refine] — each candidate re-fitted to its own MAP
   ([`bayesguide.pruning.fine_tune_fit`][]), attached with ``with_tuning``;
4. [`score_candidate`][bayesguide.comparison.score_candidate] — its evidence (the estimator
   registry) and metrics; a failure marks the candidate, never stops the rest;
5. [`assemble`][bayesguide.comparison.assemble] — architecture prior, posterior probabilities,
   Bayes factors, LOO, flags.

[`select_architecture`][bayesguide.select_architecture] runs 2–5 with one [`Selection`][bayesguide.Selection], then
bisects the path
near the best candidate and runs 3–5 on the new points ([`score_candidates`][bayesguide.pipeline.score_candidates] runs
3–5
on candidates chosen by the caller). Long runs persist as
they go through [`Hooks`][bayesguide.pipeline.Hooks]: the runner ([`bayesguide.runner`][]) saves each
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

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from bayesguide.comparison import Comparison, assemble, resolve_hessian, score_candidate
from bayesguide.comparison.rows import check_reads_batches, held_out_data
from bayesguide.infer import FitResult, OptimSettings, fitter_for, get_fitter
from bayesguide.model import ArrayLike, GuidedModel
from bayesguide.model.batches import Batches, BatchStream
from bayesguide.model.device import check_device
from bayesguide.posterior import DeltaGuide
from bayesguide.priors import get_family
from bayesguide.pruning import Candidate, fine_tune_fit, pruning_path, with_tuning
from bayesguide.pruning.convergence import TOLERANCE

__all__ = ["Hooks", "Selection", "fit_model", "make_path", "refine", "score_candidates", "select_architecture"]


def fit_model(model: GuidedModel, X: ArrayLike, y: ArrayLike, optim: OptimSettings | None = None, *,
              method: str = "map", **options: Any) -> FitResult:
    """Fit ``model`` with the fitter its prior asks for ([`bayesguide.infer.fitter_for`][]).

    ``method`` is ``"map"`` (a point estimate) or ``"svi"`` (a variational posterior);
    ``options`` are [`OptimSettings`][bayesguide.OptimSettings] fields and the fitter's own
    keywords (e.g. ``guide="lowrank"`` for SVI, ``device="cuda"`` for where the steps
    run; the fit comes back on the CPU).
    """
    return fitter_for(model.prior, method).fit(model, X, y, optim, **options)


@dataclass(frozen=True)
class Selection:
    """How candidates are cut, re-fitted and scored (the ``[select]`` table of an experiment).

    Attributes
    ----------
    bisect
        Rounds of bisection near the best candidate after the path is scored
        ([`select_architecture`][bayesguide.select_architecture]; 0: none); each adds at most two candidates.
    n_candidates
        Number of evenly spaced points of the pruning path
        ([`bayesguide.pruning_path`][]).
    threshold
        The path's threshold point: the units scoring ``≤ threshold`` removed
        (``None``: no threshold point).
    spacing
        How the path's points are spaced (see [`bayesguide.pruning_path`][]).
    min_width
        Units every layer keeps.
    round_to
        Keep a multiple of this many units in every prunable layer (``None``: any count;
        see [`bayesguide.pruning_path`][]): faster kernels, a coarser path.
    merge
        Fold units whose incoming weights lie within this relative distance of a multiple
        of another's into it (twins; see [`bayesguide.pruning_path`][]), for
        point-estimate fits (an SVI posterior is sliced, not merged); ``None``: no
        merging. The default, 0.1, merges twins up to about 6° apart (``sin`` 0.1).
    start
        Where the path starts: ``"full"``, ``"threshold"`` (without the units whose
        score is ``≤ threshold``) or ``"auto"``: the fitter's choice
        (``Fitter.path_start``; ``"threshold"`` for ``fit_marglik``, whose evidence
        collapsed the units it left out, ``"full"`` otherwise).
    score
        The unit score ranking the path; ``"auto"``: the prior family's own (``"norm"``,
        or the posterior scale for the horseshoe).
    fine_tune
        At most this many MAP steps re-fitting each candidate from its pruned weights
        (0: none). Each re-fit is checked for convergence
        (`bayesguide.pruning.check_convergence`: the ``converged`` column, and a flag
        naming the candidates that did not). The default is a ceiling, not a budget
        spent: with ``fine_tune_patience`` a re-fit stops once it has reached its mode.
    fine_tune_patience
        Stop a re-fit earlier on a plateau: the smoothed objective fell by less than
        `TOLERANCE` = 0.5 nats in this many steps (``None``: never). The default (200,
        with ``fine_tune = 3000``) re-fits each candidate to its own mode: on the
        teacher–student benchmark (`benchmarks/teacher_student.py`) 500 fixed steps left
        every candidate short of its mode and the narrow ones under-fitted, so the
        evidence preferred wider networks than the teacher's.
    fine_tune_schedule
        The re-fits' learning-rate schedule (``"constant"``; ``"anneal"`` and
        ``"cosine"`` settle the last steps but move less: on notebook 04 they left the
        narrow candidates short of their fit and the pick went from the teacher's 4
        units to 6 and 12).
    fine_tune_lr
        The re-fits' learning rate.
    batch_size
        The re-fits' minibatch size (``None``: full batch). Minibatch re-fits need a small
        ``fine_tune_lr``: at a training-sized rate a network wanders in the minibatch noise
        around its mode, the plateau check still passes, and the Laplace evidence charges
        the unsettled network thousands of nats (MNIST-1D, batch 100: 100 steps at 1e-2
        cost the dense network ~4,000 nats and made the smallest candidate the pick; 300
        steps at 1e-3 settled it, see docs/benchmarks.md).
    seed
        The re-fits' seed.
    evidence
        The evidence estimator (a registered name).
    hessian
        The Laplace curvature (``"auto"``: full up to 20,000 parameters, else KFAC, one
        choice for the whole path).
    optimize_prior
        Type-II maximum likelihood of the prior scale.
    evidence_options
        Other options of the estimator.
    occam
        The architecture prior, the prior over architectures (``[select] occam`` in an
        experiment file; see [`bayesguide.comparison.occam`][]).
    kappa
        Its strength (``"auto"``: the prior spans 1 nat over the candidates).
    loo
        Add PSIS-LOO columns.
    loo_draws
        Posterior draws per candidate for PSIS-LOO.
    progress
        A progress bar over the candidates.
    device
        Where the fine-tuning steps and the evidence estimates run: ``"cpu"``,
        ``"cuda"``, ``"cuda:1"`` or a `torch.device` (``None``, default: where each
        candidate's network is — the CPU, where bayesguide's fits and candidates come
        back). Checked on construction (an unknown or unavailable device is a
        ``ValueError`` listing the available ones); the metrics, the convergence check
        and PSIS-LOO run on the CPU. An experiment file's ``[fit] device`` sets it.
    """

    n_candidates: int = 8
    threshold: float | None = 1e-3
    spacing: str = "linear"
    min_width: int = 1
    round_to: int | None = None
    merge: float | None = 0.1
    start: str = "auto"
    score: str = "auto"
    bisect: int = 2
    fine_tune: int = 3000
    fine_tune_patience: int | None = 200
    fine_tune_schedule: str = "constant"
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
    device: str | torch.device | None = None

    def __post_init__(self) -> None:
        if self.device is not None:
            check_device(self.device)  # before any work
            object.__setattr__(self, "device", str(self.device).strip())


@dataclass(frozen=True)
class Hooks:
    """How a run persists while [`select_architecture`][bayesguide.select_architecture] works (both optional).

    ``restore(candidate)`` returns ``(the refined candidate, its scored row)`` of a
    candidate finished in an earlier invocation, or ``None`` to compute it;
    ``scored(candidate, row)`` is called as soon as a candidate is scored.
    """

    restore: Callable[[Candidate], tuple[Candidate, dict[str, Any]] | None] | None = None
    scored: Callable[[Candidate, dict[str, Any]], None] | None = None


def make_path(fit: FitResult, X: ArrayLike, y: ArrayLike, selection: Selection,
              removals: list[int] | None = None) -> list[Candidate]:
    """The nested candidates of ``fit`` (largest first); ``removals``: exactly those points."""
    score = get_family(fit.model.prior).score if selection.score == "auto" else selection.score
    start = get_fitter(fit.fitter).path_start if selection.start == "auto" else selection.start
    if start == "threshold" and selection.threshold is None:
        start = "full"
    merge = selection.merge if isinstance(fit.guide, DeltaGuide) else None  # an SVI posterior is not merged
    return pruning_path(fit, X, y, score=score, n_candidates=selection.n_candidates,
                        threshold=selection.threshold, spacing=selection.spacing, min_width=selection.min_width,
                        start=start, removals=removals, round_to=selection.round_to, merge=merge)


def refine(cand: Candidate, X: ArrayLike, y: ArrayLike, selection: Selection) -> Candidate:
    """``cand`` re-fitted by at most ``selection.fine_tune`` MAP steps (unchanged when 0)."""
    if not selection.fine_tune:
        return cand
    tuned = fine_tune_fit(cand, X, y, steps=selection.fine_tune, lr=selection.fine_tune_lr,
                          batch_size=selection.batch_size, seed=selection.seed, patience=selection.fine_tune_patience,
                          min_delta=0.0, min_delta_abs=TOLERANCE, schedule=selection.fine_tune_schedule,
                          device=selection.device)
    return with_tuning(cand, tuned, X if isinstance(X, BatchStream) else None)


def select_architecture(
    fit: FitResult,
    X: ArrayLike | Batches | BatchStream | DataLoader[Any],
    y: ArrayLike | None = None,
    selection: Selection | None = None,
    *,
    X_test: ArrayLike | None = None,
    y_test: ArrayLike | None = None,
    hooks: Hooks | None = None,
) -> Comparison:
    """Cut, re-fit and score ``fit``'s pruning path, bisect it near the best; the posterior over its architectures.

    After the path is scored, ``selection.bisect`` rounds each add the midpoints (in
    units removed) between the current best candidate and its neighbours on the path,
    where they are more than one unit apart, so that a path that jumps (25 → 2 units)
    is refined where the choice is made.

    Parameters
    ----------
    fit
        The fit of the full network (``fit_model``, or any fitter).
    X
        Its training inputs (checked by fingerprint); or, for data that do not fit in
        memory, a data loader of the training data (a ``DataLoader``,
        [`Batches`][bayesguide.model.batches.Batches] or a
        [`BatchStream`][bayesguide.model.batches.BatchStream]), checked once
        ([`Fitted.training_data`][bayesguide.posterior.Fitted.training_data]) and then read
        batch by batch by every step: the fine-tuning ([`bayesguide.fit_map`][] on the
        loader, the loader's batches; ``Selection.batch_size`` is refused), the evidence
        (``"laplace"``, its curvature summed over the batches; other estimators are refused
        before any work), the convergence check, the metrics and PSIS-LOO. A loader of one
        batch gives the same comparison as the tensors.
    y
        Its training targets (checked by fingerprint with ``X``); omitted for a loader.
    selection
        The settings (default [`Selection`][bayesguide.Selection] ()).
    X_test
        Held-out inputs for the ``test_metric`` column (or a data loader of held-out data).
    y_test
        Held-out targets for the ``test_metric`` column (omitted for a loader).
    hooks
        Persistence callbacks ([`Hooks`][bayesguide.pipeline.Hooks]), for runs that save as they go.

    Returns
    -------
    Comparison
        One row per candidate, largest first.
    """
    sel = Selection() if selection is None else selection
    Xt, yt = _training_data(fit, X, y, sel)
    path = make_path(fit, Xt, yt, sel)
    scorer = _Scorer(path, Xt, yt, sel, X_test, y_test, hooks)
    cands, rows = scorer.score(path)
    units = sum(site.n_units for site in fit.model.prunable_sites)
    for _ in range(sel.bisect):
        cmp = scorer.assemble(cands, rows, loo=False)  # only the pick is needed here: LOO runs once, at the end
        best = [c.name for c in cands].index(cmp.best.name) if cmp.best is not None else None
        new = bisection_points([units - sum(c.widths) for c in cands], best) if best is not None else []
        if not new:
            break
        known = {c.name for c in cands}  # with round_to, a midpoint may round to a candidate already scored
        fresh = [c for c in make_path(fit, Xt, yt, sel, removals=new) if c.name not in known]
        if not fresh:
            break
        more, more_rows = scorer.score(fresh)
        merged = sorted(zip(cands + more, rows + more_rows, strict=True), key=lambda cr: units - sum(cr[0].widths))
        cands, rows = [c for c, _ in merged], [r for _, r in merged]
    return scorer.assemble(cands, rows)


def _training_data(fitted: FitResult | Candidate, X: Any, y: Any,
                   sel: Selection) -> tuple[torch.Tensor, torch.Tensor] | tuple[BatchStream, None]:
    """``fitted.training_data(X, y)``; for a loader, what cannot read one is refused first."""
    data = fitted.training_data(X, y)
    if isinstance(data[0], BatchStream):
        check_reads_batches(sel.evidence)
        if sel.batch_size is not None:
            raise ValueError(
                f"Selection.batch_size={sel.batch_size} cannot be used with a data loader: the fine-tuning "
                f"reads the loader's batches (set batch_size on the DataLoader)"
            )
    return data


def bisection_points(removed: list[int], best: int) -> list[int]:
    """The midpoints between ``removed[best]`` and its neighbours, where they are > 1 apart.

    ``removed`` is each candidate's number of removed units, ascending (largest network
    first).

    Examples
    --------
    >>> bisection_points([0, 10, 40, 41], 1)
    [5, 25]
    >>> bisection_points([0, 10, 40, 41], 3)
    []
    """
    out = []
    r = removed[best]
    if best > 0 and r - removed[best - 1] > 1:
        out.append((removed[best - 1] + r) // 2)
    if best + 1 < len(removed) and removed[best + 1] - r > 1:
        out.append((r + removed[best + 1]) // 2)
    return out


class _Scorer:
    """Steps 3–5 for one comparison: one curvature for every candidate, one test set, the hooks."""

    def __init__(self, candidates: list[Candidate], X: torch.Tensor | BatchStream, y: torch.Tensor | None,
                 sel: Selection, X_test: ArrayLike | None, y_test: ArrayLike | None, hooks: Hooks | None) -> None:
        if not candidates:
            raise ValueError("no candidates to score")
        self.test = held_out_data(candidates[0].model, X_test, y_test)
        self.X, self.y, self.sel = X, y, sel
        self.hooks = Hooks() if hooks is None else hooks
        self.hessian, self.why = resolve_hessian(sel.hessian, candidates, X)

    def score(self, candidates: list[Candidate]) -> tuple[list[Candidate], list[dict[str, Any]]]:
        """Re-fit and score ``candidates`` (restored ones are not recomputed)."""
        sel, hooks = self.sel, self.hooks
        # the estimator's own bars (the curvature's) follow the selection's progress setting
        options = {"hessian": self.hessian, "optimize_prior": sel.optimize_prior, "progress": sel.progress,
                   **sel.evidence_options}
        if sel.device is not None:
            options["device"] = sel.device
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
                cand = refine(cand, self.X, self.y, sel)
            except (ValueError, RuntimeError, FloatingPointError) as err:  # one candidate never stops the run
                failure = f"failed: fine-tuning: {err}"
            row = score_candidate(cand, self.X, self.y, self.test, evidence=sel.evidence, **options)
            if failure is not None:
                row["status"], row["log_evidence"] = failure, math.nan
            if hooks.scored is not None:
                hooks.scored(cand, row)
            cands.append(cand)
            rows.append(row)
        return cands, rows

    def assemble(self, cands: list[Candidate], rows: list[dict[str, Any]], loo: bool | None = None) -> Comparison:
        """The comparison of ``cands``; ``loo`` overrides ``Selection.loo`` (``None``: keep it)."""
        sel = self.sel
        settings = {"evidence": sel.evidence, "hessian": self.hessian, "hessian_reason": self.why,
                    "optimize_prior": sel.optimize_prior}
        return assemble(rows, cands, occam=sel.occam, kappa=sel.kappa, loo=sel.loo if loo is None else loo,
                        X=self.X, y=self.y, loo_draws=sel.loo_draws, settings=settings)


def score_candidates(
    candidates: list[Candidate],
    X: ArrayLike | Batches | BatchStream | DataLoader[Any],
    y: ArrayLike | None = None,
    selection: Selection | None = None,
    *,
    X_test: ArrayLike | None = None,
    y_test: ArrayLike | None = None,
    hooks: Hooks | None = None,
) -> Comparison:
    """Re-fit ([`refine`][bayesguide.pipeline.refine]) and score candidates of one fit, then assemble their comparison.

    The steps 3–5 of the pipeline for candidates chosen by the caller (e.g. every third
    point of a path); [`select_architecture`][bayesguide.select_architecture] runs them on the whole path.
    ``X`` may be a data loader (``y`` omitted), as in ``select_architecture``.
    """
    sel = Selection() if selection is None else selection
    if not candidates:
        raise ValueError("no candidates to score")
    Xt, yt = _training_data(candidates[0], X, y, sel)
    scorer = _Scorer(candidates, Xt, yt, sel, X_test, y_test, hooks)
    return scorer.assemble(*scorer.score(candidates))
