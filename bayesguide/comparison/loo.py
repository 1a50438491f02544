"""PSIS-LOO columns of a comparison: ``elpd_loo``, its standard error, Pareto k, stacking weights.

Vehtari, Gelman & Gabry (2017) through ArviZ (:func:`bayesguide.predictive.loo`); the
stacking weights are ``arviz.compare(..., method="stacking")``. Flags: examples with
Pareto ``k > 0.7``, and a disagreement between the evidence's and LOO's winners.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from bayesguide._arviz import arviz
from bayesguide.model import ArrayLike
from bayesguide.predictive import HIGH_K as PARETO_K_LIMIT
from bayesguide.predictive import loo as psis_loo
from bayesguide.pruning import Candidate

__all__ = ["PARETO_K_LIMIT", "add_loo"]


def add_loo(table: pd.DataFrame, cands: list[Candidate], X: ArrayLike, y: ArrayLike, draws: int,
             best: Candidate | None) -> list[str]:
    """PSIS-LOO columns and stacking weights (ArviZ) added to ``table``; returns the diagnostic flags."""
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
    # LOO's pick among the candidates compared (status ok) whose elpd is a number: a NaN is never a pick
    scored = np.isfinite(np.asarray(elpd, dtype=np.float64)) & table["status"].eq("ok").to_numpy()
    if best is not None and scored.any():
        loo_best = cands[int(np.nanargmax(np.where(scored, elpd, np.nan)))]
        if loo_best.name != best.name:
            flags.append(f"evidence prefers {best.name} but PSIS-LOO prefers {loo_best.name}")
    return flags
