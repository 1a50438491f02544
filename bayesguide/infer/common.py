"""What every fitter checks and reports: argument checks and the non-finite-loss diagnosis."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from bayesguide.infer.result import FitResult
from bayesguide.model import GuidedModel
from bayesguide.model.device import module_device, take_batch
from bayesguide.posterior import Guide

__all__ = ["check_continuation", "check_init", "check_model", "make_diagnose"]


def check_model(model: GuidedModel) -> None:
    """A ``TypeError`` unless ``model`` is a [`GuidedModel`][bayesguide.GuidedModel]."""
    if not isinstance(model, GuidedModel):
        raise TypeError(f"expected a bg.GuidedModel, got {type(model).__name__}")


def check_init(init: FitResult | None, model: GuidedModel) -> None:
    """``init`` must be a fit of ``model`` (or ``None``)."""
    if init is not None:
        if not isinstance(init, FitResult):
            raise TypeError(f"init must be a FitResult, got {type(init).__name__}")
        if init.model is not model:
            raise ValueError("init is a fit of another GuidedModel; continue it with the model it was fitted with")


def continued_model(init: FitResult | None, fitter: str, model: GuidedModel) -> GuidedModel | None:
    """The model an adaptive fitter (``relevance``, ``marglik``) continues, or ``None`` for a new fit.

    ``init`` must be a ``fitter`` fit of ``model`` (or of its network): its own model —
    holding the last estimate of the guidance — is the one training goes on with.
    """
    if init is None:
        return None
    if not isinstance(init, FitResult):
        raise TypeError(f"init must be a FitResult, got {type(init).__name__}")
    if init.fitter != fitter:
        raise ValueError(f"init is a {init.fitter!r} fit; fit_{fitter} continues only {fitter} fits")
    if model is not init.model and model.net is not init.model.net:
        raise ValueError("init is a fit of another GuidedModel; continue it with the model it was fitted with")
    return init.model


def check_continuation(init: FitResult | None, fitter: str, fingerprint: str) -> None:
    """``init`` must have been fitted on the data it is continued on.

    Continuing a fit (``init`` made by the same ``fitter``: its optimiser state and
    histories carry on) on other data is refused — the result would mix two data sets. A
    warm start from a fit of another kind on other data (only its weights are used) is
    allowed with a ``UserWarning``.
    """
    if init is None or init.data_fingerprint == fingerprint:
        return
    if init.fitter == fitter:
        raise ValueError(
            f"init was fitted on other data (fingerprint {init.data_fingerprint} != {fingerprint}): a fit "
            f"continues on its own training data; to start from its weights on new data, fit a new model "
            f"around init.module"
        )
    warnings.warn(
        f"init ({init.label}) was fitted on other data: its weights are only a starting point here",
        UserWarning, stacklevel=3,
    )


def make_diagnose(
    model: GuidedModel, guide: Guide, module: torch.nn.Module, X: torch.Tensor, y: torch.Tensor
) -> Callable[[torch.Tensor | None], str]:
    """A function that names what made the loss non-finite (parameters or which term)."""

    def diagnose(idx: torch.Tensor | None) -> str:
        problems: list[str] = []
        with torch.no_grad():
            values = guide.mean_values()
            for name, v in values.items():
                if not torch.isfinite(v).all():
                    problems.append(f"site {name!r} has non-finite parameters")
            for site in model.sites:
                lp = model.site_log_prior(site, values, X.dtype)
                if not torch.isfinite(lp):
                    problems.append(f"prior term of site {site.name!r} is {float(lp)}")
            noise = guide.noise()
            if noise is not None and not torch.isfinite(noise):
                problems.append("site 'noise' is non-finite")
            xb, yb = take_batch(X, y, idx, module_device(module))
            ll, _ = model.log_joint(model.chain(module), values, xb, yb, noise=noise)
            if not torch.isfinite(ll):
                problems.append(f"likelihood term 'obs' is {float(ll)}")
        return "; ".join(problems) or "no single term is non-finite (overflow in the sum; lower lr)"

    return diagnose
