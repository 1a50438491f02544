"""PSIS-LOO columns of a comparison: ``elpd_loo``, its standard error, Pareto k, stacking weights.

Vehtari, Gelman & Gabry (2017) through ArviZ ([`bayesguide.predictive.loo`][bayesguide.predictive.loo]); the
stacking weights are ``arviz.compare(..., method="stacking")``. A candidate scored by
Laplace evidence is drawn from the same Laplace posterior — its type-II prior scale
(``prior_scale``), the comparison's curvature (``"full"``, else ``"diag"``: KFAC has no
sampler here) — through the GLM predictive; an SVI candidate from its guide.

Flags: examples with Pareto ``k > 0.7``, and a disagreement between the selection and
LOO that the data support — LOO's best candidate ahead of the pick by more than
`DISAGREE_SE` standard errors of the paired difference (``arviz.compare``'s
``dse``). A difference within that noise is not a disagreement, and neither is one
where LOO itself is unreliable for either candidate (more than `RELIABLE_FRACTION`
of the examples with ``k > 0.7``): that is flagged as such instead.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bayesguide._arviz import arviz
from bayesguide.model import ArrayLike
from bayesguide.predictive import HIGH_K as PARETO_K_LIMIT
from bayesguide.predictive import loo as psis_loo
from bayesguide.pruning import Candidate

__all__ = ["DISAGREE_SE", "PARETO_K_LIMIT", "RELIABLE_FRACTION", "LooColumns", "add_loo", "arviz_table", "loo_options"]

DISAGREE_SE = 2.0
"""LOO's best must lead the pick by this many standard errors of the difference to be flagged."""
RELIABLE_FRACTION = 0.05
"""LOO of a candidate is taken as reliable when at most this fraction of examples has k > 0.7."""


@dataclass(frozen=True)
class LooColumns:
    """What [`add_loo`][bayesguide.comparison.loo.add_loo] adds besides the table's columns.

    Attributes
    ----------
    flags
        The diagnostic flags, in words.
    idata
        Candidate name → the ``arviz.InferenceData`` its PSIS-LOO was computed from.
    table
        ``arviz.compare`` of those ``InferenceData``
        ([`arviz_table`][bayesguide.comparison.loo.arviz_table]); ``None`` with fewer than
        two usable candidates.
    """

    flags: list[str]
    idata: dict[str, Any] = field(default_factory=dict)
    table: pd.DataFrame | None = None


def loo_options(table: pd.DataFrame, i: int, cand: Candidate, draws: int, hessian: str = "diag") -> dict[str, Any]:
    """The ``to_inference_data`` options of row ``i``'s posterior draws.

    SVI candidates are drawn from their guide; the others from the Laplace posterior at
    the row's type-II ``prior_scale`` (1 when it has none), with the comparison's
    curvature (``"full"``, else ``"diag"``).
    """
    options: dict[str, Any] = {"draws": draws}
    if not cand.variational:
        scale = float(table["prior_scale"].iloc[i]) if "prior_scale" in table else float("nan")
        options.update(hessian="full" if hessian == "full" else "diag",
                       prior_scale=scale if np.isfinite(scale) and scale > 0 else 1.0)
    return options


def arviz_table(idata: dict[str, Any]) -> pd.DataFrame:
    """``arviz.compare(idata, ic="loo", method="stacking")``, ArviZ's own high-``k`` warnings silenced.

    The form ``arviz.plot_compare`` reads: index = candidate names, columns ``rank``,
    ``elpd_loo``, ``p_loo``, ``elpd_diff``, ``weight``, ``se``, ``dse``, ``warning``,
    ``scale``. ArviZ takes the draws as posterior draws: this is PSIS-LOO *without* the
    correction for approximate draws that [`bayesguide.predictive.loo`][bayesguide.predictive.loo] may apply.
    """
    if len(idata) < 2:
        raise ValueError(f"arviz.compare needs at least two candidates with posterior draws, got {len(idata)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return arviz().compare(dict(idata), ic="loo", method="stacking")


def add_loo(table: pd.DataFrame, cands: list[Candidate], X: ArrayLike, y: ArrayLike | None, draws: int,
            best: Candidate | None, hessian: str = "diag") -> LooColumns:
    """PSIS-LOO columns and stacking weights (ArviZ) added to ``table``; returns the flags,
    the candidates' ``InferenceData`` and ArviZ's comparison of them
    ([`LooColumns`][bayesguide.comparison.loo.LooColumns]).

    ``X`` may be a data loader (``y`` ``None``): PSIS-LOO is then streamed
    ([`bayesguide.predictive.loo`][]) and, the draws not being kept, there are no
    ``InferenceData``, no stacking weights and no ArviZ table; the columns and flags are
    the same."""
    az = arviz()
    flags: list[str] = []
    results: dict[str, Any] = {}
    elpd, se, kmax, kq, corrected = [], [], [], [], []
    for i, cand in enumerate(cands):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # high Pareto k: flagged below instead
            res = psis_loo(cand, X, y, **loo_options(table, i, cand, draws, hessian))
        elpd.append(res.elpd)
        se.append(res.se)
        kmax.append(float(np.max(res.pareto_k)))
        kq.append(np.nan if res.k_q is None else res.k_q)
        corrected.append(res.corrected)
        results[cand.name] = res
        if res.n_high_k:
            flags.append(
                f"candidate {cand.name}: {res.n_high_k} observations with Pareto k > {PARETO_K_LIMIT}"
            )
    table["elpd_loo"], table["elpd_se"], table["pareto_k_max"] = elpd, se, kmax
    table["pareto_k_q"], table["loo_corrected"] = kq, corrected
    scored = np.isfinite(np.asarray(elpd, dtype=np.float64)) & table["status"].eq("ok").to_numpy()
    usable = [c.name for c, ok in zip(cands, scored) if ok]
    if any(results[n].idata is None for n in usable):  # from a data loader: the draws were not kept
        if len(usable) >= 2:
            flags += _disagreement(results, max(usable, key=lambda n: results[n].elpd), best)
        return LooColumns(flags)
    idata = {n: results[n].idata for n in usable}
    if len(usable) < 2:
        return LooColumns(flags, idata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranked = az.compare({n: results[n].elpd_data for n in usable}, ic="loo", method="stacking")
    table["stacking_weight"] = [float(ranked["weight"][c.name]) if c.name in usable else np.nan for c in cands]
    flags += _disagreement(results, str(ranked.index[0]), best)
    return LooColumns(flags, idata, arviz_table(idata))


def _disagreement(results: dict[str, Any], top: str, best: Candidate | None) -> list[str]:
    """The flag when LOO's best ``top`` leads the pick by more than ``DISAGREE_SE`` paired standard errors."""
    if best is None or best.name not in results:
        return []
    if top == best.name:
        return []
    unreliable = [n for n in (top, best.name) if results[n].n_high_k > RELIABLE_FRACTION * results[n].pareto_k.size]
    if unreliable:
        return [f"PSIS-LOO cannot check the selection: it prefers {top} to {best.name}, but its estimate is "
                f"unreliable for {' and '.join(unreliable)} (more than {RELIABLE_FRACTION:.0%} of the examples "
                f"with Pareto k > {PARETO_K_LIMIT}: the posterior draws are far from the leave-one-out posteriors)"]
    diff = results[top].pointwise - results[best.name].pointwise
    gap, dse = float(diff.sum()), float(np.sqrt(diff.size * np.var(diff)))
    if gap <= DISAGREE_SE * dse:
        return []
    return [f"PSIS-LOO disagrees with the selection: it prefers {top} to {best.name} by {gap:.1f} ± {dse:.1f} "
            f"nats of expected log predictive density (more than {DISAGREE_SE:g} standard errors)"]
