"""A results dictionary from a :class:`~bayesguide.Comparison`, for reports made in Python.

``bayesguide run`` writes the full ``results.json`` (schema of
:mod:`bayesguide.results`); a user who called :func:`bayesguide.compare` in a notebook
has a :class:`~bayesguide.Comparison` instead. :func:`results_from_comparison` builds
the part of the schema a comparison knows: the candidates (from ``cmp.table``), the fit
they were cut from (``cmp.candidates[0].fit``), the flags, the best candidate and its
size. What it cannot know (the data set's name, a test split, measured latencies) is
``None``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from bayesguide.likelihoods import Likelihood
from bayesguide.results import SCHEMA_VERSION, downsample, jsonable

if TYPE_CHECKING:
    from bayesguide.comparison import Comparison
    from bayesguide.infer import FitResult

__all__ = ["results_from_comparison"]

_COLUMNS = ("n_params", "flops", "log_evidence", "log_prior", "log_posterior", "posterior_prob",
            "log_bayes_factor", "prior_scale", "elpd_loo", "elpd_se", "pareto_k_max", "stacking_weight")
_MOST = 500


def _plain(value: Any) -> Any:
    """A JSON scalar, or the value's text."""
    value = jsonable(value)
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def _fit_section(fit: FitResult) -> dict[str, Any]:
    """The ``fit`` entry of the schema (histories downsampled to at most 500 points)."""
    losses, loss_steps = downsample(fit.losses, np.arange(len(fit.losses)), _MOST)
    n_rec = len(fit.norm_steps)
    _, idx = downsample(np.arange(n_rec), np.arange(n_rec), _MOST)
    return {
        "method": fit.method,
        "steps": fit.steps,
        "wall_time_s": fit.wall_time,
        "stop_reason": fit.stop_reason,
        "prior": str(fit.model.prior),
        "final_loss": fit.final_loss if len(fit.losses) else None,
        "losses": losses,
        "loss_steps": loss_steps,
        "unit_norms": {str(k): np.asarray(v)[idx].tolist() for k, v in fit.unit_norms.items()},
        "norm_steps": [int(s) for s in np.asarray(fit.norm_steps)[idx]],
        "train_metric": None,
        "test_metric": None,
    }


def results_from_comparison(cmp: Comparison) -> dict[str, Any]:
    """The results dictionary (schema of :mod:`bayesguide.results`) of a comparison.

    Parameters
    ----------
    cmp
        The outcome of :func:`bayesguide.compare`; only read.

    Returns
    -------
    dict
        ``status`` ``"complete"``; ``config`` with the network's widths, the prior and
        the comparison's settings; ``fit`` from the fit the candidates were cut from;
        one ``candidates`` entry per table row; ``best``; ``recommended`` with the best
        candidate's size (latencies ``None``: not measured here); ``flags``.
    """
    table = cmp.table
    records = table.to_dict("records")
    candidates = []
    for cand, row in zip(cmp.candidates, records):
        entry: dict[str, Any] = {"name": str(row.get("name", cand.name)), "widths": list(cand.widths),
                                 "kept": {str(k): list(v) for k, v in cand.kept.items()}}
        entry.update({c: row.get(c) for c in _COLUMNS})
        entry["status"] = row.get("status")
        entry["metrics"] = {"train": row.get("train_metric"), "test": row.get("test_metric")}
        candidates.append(entry)
    first = cmp.candidates[0]
    fit = first.fit
    prior = fit.model.prior
    likelihood = fit.model.likelihood
    best = cmp.best
    recommended = None if best is None else {
        "name": best.name, "widths": list(best.widths), "n_params": best.n_params, "flops": best.flops,
        "n_params_full": best.original_params, "flops_full": best.original_flops,
        "latency_ms": None, "latency_full_ms": None, "speedup": None,
    }
    config = {
        "network": {"hidden": list(first.original_widths), "activation": None},
        "prior": {"kind": type(prior).__name__, "strength": _plain(getattr(prior, "strength", None)),
                  "guidance": _plain(repr(getattr(prior, "guidance", None)))},
        "fit": {"method": fit.method, **{str(k): _plain(v) for k, v in fit.settings.items()}},
        "select": {str(k): _plain(v) for k, v in cmp.settings.items()},
    }
    results = {
        "schema_version": SCHEMA_VERSION,
        "status": "complete",
        "config": config,
        "data": {"name": None, "task": "regression" if likelihood is Likelihood.GAUSSIAN else "classification",
                 "n_train": fit.n_data, "n_test": None, "n_features": None, "n_outputs": None},
        "fit": _fit_section(fit),
        "metric": cmp.settings.get("metric", "rmse" if likelihood is Likelihood.GAUSSIAN else "accuracy"),
        "candidates": candidates,
        "best": None if best is None else best.name,
        "recommended": recommended,
        "flags": [str(f) for f in cmp.flags],
        "timings": {},
    }
    out: dict[str, Any] = jsonable(results)
    return out
