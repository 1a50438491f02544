"""``Comparison``: the table of candidates, their evidence, prior and posterior probability.

Compute, then report: :func:`bayesguide.compare` returns a :class:`Comparison` whose
``table`` the reports only read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bayesguide.pruning import Candidate

__all__ = ["Comparison"]


@dataclass(frozen=True)
class Comparison:
    """The outcome of :func:`compare`.

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
        :mod:`bayesguide.marglik.laplace`); with LOO also ``elpd_loo``, ``elpd_se``,
        ``pareto_k_max``, ``pareto_k_q`` and ``loo_corrected`` (how far the draws are
        from the posterior, and whether the weights were corrected for it; see
        :mod:`bayesguide.predictive`), ``stacking_weight``.
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
                            "evidence_prob", "log_bayes_factor", "train_metric", "test_metric", "elpd_loo",
                            "pareto_k_max", "status") if c in self.table]
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            body = self.table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}")
        best = "none (every candidate failed)" if self.best is None else self.best.name
        lines = [f"Comparison of {len(self.candidates)} candidates; best: {best}", body]
        lines += [f"! {f}" for f in self.flags]
        return "\n".join(lines)
