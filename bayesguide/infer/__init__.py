"""Inference: fitters that turn a ``GuidedModel`` and data into a ``FitResult``.

One fitter per module, all running the same Adam loop (:mod:`~bayesguide.infer.loop`)
under one :class:`OptimSettings`: :func:`fit_map` (MAP = guided regularization),
:func:`fit_svi` (a variational posterior), :func:`fit_l0` (hard-concrete L0 gates) and
:func:`fit_relevance` (relevance guidance re-estimated during training) and
:func:`fit_marglik` (prior precisions learned from the Laplace evidence during training). The fitter
registry (:mod:`~bayesguide.infer.registry`) says which fitter trains which prior
(:func:`fitter_for`) and continues any fit (:func:`resume_fit`).

Layer: above :mod:`bayesguide.posterior`, below :mod:`bayesguide.pruning`.
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
