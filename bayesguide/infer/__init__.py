"""Inference: fitters that turn a ``GuidedModel`` and data into a ``FitResult``.

One fitter per module, all running the same Adam loop ([`loop`][bayesguide.infer.loop])
under one [`OptimSettings`][bayesguide.OptimSettings]: [`fit_map`][bayesguide.fit_map] (MAP = guided regularization),
[`fit_svi`][bayesguide.fit_svi] (a variational posterior), [`fit_l0`][bayesguide.fit_l0] (hard-concrete L0 gates) and
[`fit_relevance`][bayesguide.fit_relevance] (relevance guidance re-estimated during training) and
[`fit_marglik`][bayesguide.fit_marglik] (prior precisions learned from the Laplace evidence during training). The fitter
registry ([`registry`][bayesguide.infer.registry]) says which fitter trains which prior
([`fitter_for`][bayesguide.infer.registry.fitter_for]) and continues any fit ([`resume_fit`][bayesguide.resume_fit]).

Layer: above [`bayesguide.posterior`][], below [`bayesguide.pruning`][].
"""

from __future__ import annotations

from bayesguide.infer.l0 import L0Gates, fit_l0, l0_gates
from bayesguide.infer.loop import NonFiniteLossError, optimize
from bayesguide.infer.map import Engine, fit_map
from bayesguide.infer.marglik import PrecisionTrace, fit_marglik
from bayesguide.infer.registry import Fitter, fitter_for, fitters, get_fitter, register_fitter, resume_fit
from bayesguide.infer.relevance import fit_relevance, insensitivity
from bayesguide.infer.result import FitResult
from bayesguide.infer.settings import OptimSettings, Schedule
from bayesguide.infer.svi import fit_svi

__all__ = [
    "Engine",
    "FitResult",
    "Fitter",
    "L0Gates",
    "NonFiniteLossError",
    "OptimSettings",
    "PrecisionTrace",
    "Schedule",
    "fit_l0",
    "fit_map",
    "fit_marglik",
    "fit_relevance",
    "fit_svi",
    "fitter_for",
    "fitters",
    "get_fitter",
    "insensitivity",
    "l0_gates",
    "optimize",
    "register_fitter",
    "resume_fit",
]
