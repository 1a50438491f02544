"""Typed result records from the objects a run or a notebook holds.

``bayesguide run`` writes the full ``results.json`` ([`bayesguide.results`][]); a user
who called [`bayesguide.compare`][] in a notebook has a
[`Comparison`][bayesguide.Comparison] instead. The functions here build the records of
either: `fit_record` (a [`FitResult`][bayesguide.FitResult]), `candidate_records`
(a comparison's table) and [`results_from_comparison`][bayesguide.report.results_from_comparison] (the whole document a
comparison knows: what it cannot know — the data set's name, a test split, measured
latencies — is ``None``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bayesguide.atomic import jsonable
from bayesguide.comparison import Comparison
from bayesguide.infer import FitResult, get_fitter
from bayesguide.likelihoods import Likelihood
from bayesguide.pruning import Candidate
from bayesguide.results import (
    CandidateRecord,
    DataRecord,
    FitRecord,
    Recommendation,
    RunResults,
    downsample,
    significant,
)

__all__ = ["candidate_records", "fit_record", "recommendation", "results_from_comparison"]

_MOST = 500


def _plain(value: Any) -> Any:
    """A JSON scalar, or the value's text."""
    value = jsonable(value)
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def fit_record(fit: FitResult, train_metric: float | None = None, test_metric: float | None = None) -> FitRecord:
    """The ``fit`` section of a fit (histories downsampled to at most 500 points).

    Unit norms, one value per unit and record (most of the section), keep 7 significant
    digits: float32's precision, the precision they were computed in.

    MAP fits also keep their data term and penalty (``loss_terms``: ``"nll"`` and
    ``"penalty"``, at the same steps as ``losses``; NaN becomes ``None``). Fits whose
    fitter re-estimates the guidance (``Fitter.adapts_guidance``: relevance,
    marglik) keep the last estimate in ``coefficients``.
    """
    losses, loss_steps = downsample(fit.losses, np.arange(len(fit.losses)), _MOST)
    n_rec = len(fit.norm_steps)
    _, idx = downsample(np.arange(n_rec), np.arange(n_rec), _MOST)
    adaptive = get_fitter(fit.fitter).adapts_guidance
    n_loss = len(fit.losses)
    terms = {k: downsample(v, np.arange(n_loss), _MOST)[0] for k, v in fit.loss_terms.items() if len(v) == n_loss}
    return FitRecord(
        method=fit.method, fitter=fit.fitter, prior=str(fit.model.prior), steps=fit.steps,
        wall_time_s=fit.wall_time, stop_reason=fit.stop_reason,
        final_loss=fit.final_loss if len(fit.losses) else None, losses=losses, loss_steps=loss_steps,
        unit_norms={str(k): significant(np.asarray(v)[idx].tolist()) for k, v in fit.unit_norms.items()},
        norm_steps=[int(s) for s in np.asarray(fit.norm_steps)[idx]], train_metric=train_metric,
        test_metric=test_metric,
        coefficients={k: v.tolist() for k, v in fit.model.coefficients.items()} if adaptive else None,
        loss_terms=jsonable(terms) if terms else None,
    )


def candidate_records(cmp: Comparison) -> tuple[CandidateRecord, ...]:
    """One record per row of ``cmp.table``, in table order."""
    return tuple(CandidateRecord.from_row(row, {str(k): list(v) for k, v in cand.kept.items()})
                 for cand, row in zip(cmp.candidates, cmp.table.to_dict("records")))


def recommendation(best: Candidate, latency_ms: float | None = None,
                   latency_full_ms: float | None = None, latency_batch: int | None = None) -> Recommendation:
    """The ``recommended`` section for ``best`` (latencies and their batch size when measured)."""
    speedup = None if latency_ms is None or latency_full_ms is None else latency_full_ms / latency_ms
    return Recommendation(
        name=best.name, widths=list(best.widths), n_params=best.n_params, flops=best.flops,
        n_params_full=best.original_params, flops_full=best.original_flops, latency_ms=latency_ms,
        latency_full_ms=latency_full_ms, speedup=speedup, latency_batch=latency_batch,
    )


def results_from_comparison(cmp: Comparison) -> dict[str, Any]:
    """The results dictionary (schema of [`bayesguide.results`][]) of a comparison.

    Parameters
    ----------
    cmp
        The outcome of [`bayesguide.compare`][]; only read.

    Returns
    -------
    dict
        ``status`` ``"complete"``; ``config`` with the network's widths, the prior and
        the comparison's settings; ``fit`` from the fit the candidates were cut from;
        one ``candidates`` entry per table row; ``best``; ``recommended`` with the best
        candidate's size (latencies ``None``: not measured here); ``flags``.
    """
    first = cmp.candidates[0]
    fit = first.fit
    prior = fit.model.prior
    likelihood = fit.model.likelihood
    config = {
        "network": {"hidden": list(first.original_widths), "activation": None},
        "prior": {"kind": type(prior).__name__, "strength": _plain(getattr(prior, "strength", None)),
                  "guidance": _plain(repr(getattr(prior, "guidance", None)))},
        "fit": {"method": fit.method, **{str(k): _plain(v) for k, v in fit.settings.items()}},
        "select": {str(k): _plain(v) for k, v in cmp.settings.items()},
    }
    task = "regression" if likelihood is Likelihood.GAUSSIAN else "classification"
    results = RunResults(
        status="complete", config=config, data=DataRecord(name=None, task=task, n_train=fit.n_data),
        fit=fit_record(fit), metric=str(cmp.settings.get("metric", likelihood.metric_name)),
        candidates=candidate_records(cmp), best=None if cmp.best is None else cmp.best.name,
        recommended=None if cmp.best is None else recommendation(cmp.best), flags=tuple(str(f) for f in cmp.flags),
        selection={str(k): _plain(v) if not isinstance(v, (list, tuple)) else [_plain(x) for x in v]
                   for k, v in cmp.settings.items()},
    )
    return results.to_json()
