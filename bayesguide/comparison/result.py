"""``Comparison``: the table of candidates, their evidence, prior and posterior probability.

Compute, then report: `bayesguide.compare` returns a `Comparison` whose `table` the
reports only read. With PSIS-LOO it also holds each candidate's `arviz.InferenceData`
and ArviZ's own comparison of them (`loo_table`, the form `arviz.plot_compare` reads).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bayesguide.comparison.loo import arviz_table, loo_options
from bayesguide.model import ArrayLike
from bayesguide.predictive import to_inference_data
from bayesguide.pruning import Candidate

__all__ = ["Comparison"]


@dataclass(frozen=True)
class Comparison:
    """The outcome of [`compare`][bayesguide.compare].

    Attributes
    ----------
    table
        One row per candidate, in the order given: ``name``, ``widths``, ``n_params``,
        ``flops``, ``log_evidence``, ``log_prior``, ``log_posterior`` (unnormalised),
        ``posterior_prob``, ``evidence_prob`` (the same under a uniform prior),
        ``occam_cost``, ``log_bayes_factor`` (against the best evidence), the train
        (and test) metric, ``status``; with Laplace evidence also ``prior_scale``,
        ``substituted`` and ``prior_used`` (the Gaussian prior the evidence used:
        ``"own"``, ``"counterpart"`` or ``"uniform"``, see
        [`bayesguide.marglik.laplace`][bayesguide.marglik.laplace]); with LOO also ``elpd_loo``, ``elpd_se``,
        ``pareto_k_max``, ``pareto_k_q`` and ``loo_corrected`` (how far the draws are
        from the posterior, and whether the weights were corrected for it; see
        [`bayesguide.predictive`][bayesguide.predictive]), ``stacking_weight``.
    candidates
        The candidates, in table order.
    best
        The candidate of highest posterior probability (``None`` if every one failed).
    flags
        Warnings from the diagnostics, in words.
    settings
        How the comparison was made (evidence, curvature, architecture prior and κ, LOO draws).
    loo_table
        With `loo=True` (and at least two usable candidates): `arviz.compare` of the
        candidates' `InferenceData`, exactly as ArviZ returns it — index = candidate
        names; columns `rank`, `elpd_loo`, `p_loo`, `elpd_diff`, `weight` (stacking),
        `se`, `dse`, `warning`, `scale` — so `arviz.plot_compare(cmp.loo_table)` works.
        ArviZ takes the draws as posterior draws; the `elpd_loo` column of `table` may
        instead be corrected for approximate draws (`loo_corrected`, see
        `bayesguide.predictive`), and then the two differ.
    idata
        With `loo=True`: candidate name → the `arviz.InferenceData` its PSIS-LOO used
        (see `inference_data`); `arviz.compare(cmp.inference_data())` is `loo_table`.
    """

    table: pd.DataFrame
    candidates: tuple[Candidate, ...]
    best: Candidate | None
    flags: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    loo_table: pd.DataFrame | None = None
    idata: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def probabilities(self) -> np.ndarray:
        return self.table["posterior_prob"].to_numpy()

    def inference_data(self, X: ArrayLike | None = None, y: ArrayLike | None = None, *,
                       draws: int | None = None) -> dict[str, Any]:
        """Candidate name → `arviz.InferenceData`, ready for `arviz.compare`.

        Without data: the draws the comparison's PSIS-LOO used (`loo=True`). With the
        training data `X, y`: fresh draws of every candidate that was scored (status
        `"ok"`), drawn as PSIS-LOO draws them — the guide of an SVI candidate, else the
        Laplace posterior at the row's type-II `prior_scale` with the comparison's
        curvature — `draws` of them (default: the comparison's `loo_draws`, else 200).
        With the same number of draws they are the comparison's own draws (same seed).

        Parameters
        ----------
        X
            The training inputs (optional, see above).
        y
            The training targets (with `X`).
        draws
            Number of posterior draws per candidate (only with data).

        Returns
        -------
        dict of str to arviz.InferenceData
            In table order; each has the groups `posterior`, `log_likelihood`
            (`obs`), `observed_data` and `sample_stats`.
        """
        if (X is None) != (y is None):
            raise ValueError("give both X and y, or neither")
        if X is None:
            if draws is not None:
                raise ValueError("draws= needs the training data X, y (fresh draws)")
            if not self.idata:
                raise ValueError(
                    "this comparison holds no posterior draws (it was made with loo=False): pass the "
                    "training data, cmp.inference_data(X, y), or compare with loo=True"
                )
            return dict(self.idata)
        n = int(draws if draws is not None else self.settings.get("loo_draws", 200))
        hessian = str(self.settings.get("hessian", "diag"))
        ok = self.table["status"].eq("ok").to_numpy()
        return {c.name: to_inference_data(c, X, y, **loo_options(self.table, i, c, n, hessian))
                for i, c in enumerate(self.candidates) if ok[i]}

    def arviz_compare(self, X: ArrayLike | None = None, y: ArrayLike | None = None, *,
                      draws: int | None = None) -> pd.DataFrame:
        """`arviz.compare` (PSIS-LOO, stacking weights) of `inference_data(X, y, draws=draws)`.

        Without arguments, and when the comparison ran PSIS-LOO, this is `loo_table`.

        Parameters
        ----------
        X
            The training inputs (optional: see `inference_data`).
        y
            The training targets (with `X`).
        draws
            Number of posterior draws per candidate (only with data).
        """
        if X is None and y is None and draws is None and self.loo_table is not None:
            return self.loo_table
        return arviz_table(self.inference_data(X, y, draws=draws))

    def __str__(self) -> str:
        cols = [c for c in ("name", "n_params", "log_evidence", "log_prior", "posterior_prob",
                            "evidence_prob", "log_bayes_factor", "train_metric", "test_metric", "elpd_loo",
                            "pareto_k_max", "status") if c in self.table]
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            body = self.table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}")
        best = "none (every candidate failed)" if self.best is None else self.best.name
        lines = [f"Comparison of {len(self.candidates)} candidates; best: {best}", body]
        lines += [f"! {f}" for f in self.flags]
        return "\n".join(lines)
