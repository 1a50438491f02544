"""The fitter registry: which training algorithm fits which prior, and how a fit is continued.

A *fitter* is a function ``fit(model, X, y, optim=None, *, init=None, **options) -> FitResult``
registered under a name with what the rest of the library needs to know about it
([`Fitter`][bayesguide.infer.registry.Fitter]). The built-ins:

| name | function | trains |
|---|---|---|
| ``map`` | [`bayesguide.fit_map`][] | densities (``[fit] method = "map"``) |
| ``svi`` | [`bayesguide.fit_svi`][] | densities and the horseshoe (``"svi"``) |
| ``l0`` | [`bayesguide.fit_l0`][] | ``HardConcreteGates`` (``"map"``) |
| ``relevance`` | [`bayesguide.fit_relevance`][] | ``GuidedNormal`` with relevance guidance |
| ``marglik`` | [`bayesguide.fit_marglik`][] | ``GuidedNormal`` with evidence-driven guidance |

A prior family names its fitter per ``[fit] method`` ([`PriorFamily`][bayesguide.priors.PriorFamily],
``fitters``); an adaptive guidance profile names the fitter that re-estimates it
(``profile.fitter``) and takes precedence. [`fitter_for`][bayesguide.infer.registry.fitter_for] makes that choice,
[`resume_fit`][bayesguide.resume_fit] continues any fit with the fitter that made it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bayesguide._options import Registry
from bayesguide.guidance import adaptive_fitter
from bayesguide.infer.l0 import fit_l0
from bayesguide.infer.map import fit_map
from bayesguide.infer.marglik import fit_marglik
from bayesguide.infer.relevance import fit_relevance
from bayesguide.infer.result import FitResult
from bayesguide.infer.settings import OptimSettings
from bayesguide.infer.svi import fit_svi
from bayesguide.model import ArrayLike
from bayesguide.priors import UnitPrior, get_family

__all__ = ["Fitter", "fitter_for", "fitters", "get_fitter", "register_fitter", "resume_fit"]


@dataclass(frozen=True)
class Fitter:
    """One registered fitter.

    Attributes
    ----------
    name
        Its registry name (``FitResult.fitter`` of its results).
    fit
        ``fit(model, X, y, optim=None, *, init=None, **options) -> FitResult``.
    summary
        One line for ``--help`` and the docs.
    posterior
        Whether it fits a variational posterior (``[fit] method = "svi"``) rather than a
        point estimate (``"map"``).
    schedules
        Whether experiment files may set ``[fit] schedule`` for it.
    minibatch
        Whether experiment files may set ``[fit] batch_size`` for it.
    options
        Keywords of ``fit`` that experiment files set from ``[fit]`` (e.g. ``"guide"``).
    kinds
        The prior kinds it can train (``None``: any family that names it).
    fixed_noise
        Whether it needs a fixed Gaussian noise (experiment files learn σ for regression).
    adapts_guidance
        Whether it re-estimates the guidance coefficients (``fit.model.coefficients``),
        which are then saved with the fit and carried by its candidates.
    path_start
        Where a pruning path of its fits starts by default (``Selection.start="auto"``):
        ``"full"``, or ``"threshold"`` when the fit itself collapses the units it does not
        need (the larger candidates would only add dead units).
    """

    name: str
    fit: Callable[..., FitResult]
    summary: str
    posterior: bool = False
    schedules: bool = True
    minibatch: bool = True
    options: tuple[str, ...] = ()
    kinds: tuple[str, ...] | None = None
    fixed_noise: bool = False
    adapts_guidance: bool = False
    path_start: str = "full"

    @property
    def method(self) -> str:
        """``"svi"`` for a posterior fitter, else ``"map"`` (the ``[fit] method`` it answers)."""
        return "svi" if self.posterior else "map"


_FITTERS: Registry[Fitter] = Registry("fitter")


def register_fitter(fitter: Fitter) -> Fitter:
    """Add a fitter (its name must be new); return it."""
    return _FITTERS.register(fitter.name, fitter)


def get_fitter(name: str) -> Fitter:
    """The fitter registered as ``name`` (the error lists the registered ones)."""
    return _FITTERS.get(name)


def fitters() -> list[Fitter]:
    """The registered fitters, in registration order."""
    return _FITTERS.values()


def fitter_for(prior: UnitPrior, method: str) -> Fitter:
    """The fitter that trains ``prior`` for ``[fit] method`` (``"map"`` or ``"svi"``).

    An adaptive guidance profile's own fitter comes first; otherwise the prior family's
    choice for ``method``.

    Raises
    ------
    ValueError
        When nothing trains ``prior`` that way; the message says which ``method`` does.

    Examples
    --------
    >>> import bayesguide as bg
    >>> fitter_for(bg.HardConcreteGates(1.0), "map").name
    'l0'
    """
    adaptive = adaptive_fitter(prior.guidance)
    family = get_family(prior)
    if adaptive is not None:
        fitter = get_fitter(adaptive)
        if fitter.method != method:
            raise ValueError(f"{prior.guidance!r} guidance is trained by fit_{fitter.name} (method "
                             f"{fitter.method!r}), not by method {method!r}")
        return fitter
    if method not in family.fitters:
        other = ", ".join(repr(m) for m in family.fitters)
        raise ValueError(f"prior kind {family.kind!r} has no {method!r} fit; it is fitted with method {other}")
    return get_fitter(family.fitters[method])


def resume_fit(fit: FitResult, X: ArrayLike, y: ArrayLike, steps: int, **options: Any) -> FitResult:
    """Continue ``fit`` for ``steps`` more steps with the fitter that made it.

    The same settings unless ``options`` (fields of [`OptimSettings`][bayesguide.OptimSettings]
    but ``steps``) override them; the optimiser state, the guide and the histories carry over, and an
    adaptive fit (relevance) goes on re-estimating its guidance. ``fit`` is not changed. A fit
    made from a data loader continues on the same loader, passed as ``X`` with ``y=None``.

    Examples
    --------
    >>> import torch, bayesguide as bg
    >>> X, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> fit = bg.fit_map(bg.GuidedModel(net, bg.GuidedNormal(0.1)), X, y, steps=5, progress=False)
    >>> bg.resume_fit(fit, X, y, 5).steps
    10
    """
    if not isinstance(fit, FitResult):
        raise TypeError(f"resume_fit takes a FitResult, got {type(fit).__name__}")
    fitter = get_fitter(fit.fitter)
    from_settings = {k: v for k, v in fit.settings.items() if k in _OPTIM_KEYS}
    kwargs: dict[str, Any] = {k: v for k, v in fit.settings.items() if k in fitter.options + _OWN_KEYS}
    return fitter.fit(fit.model, X, y, init=fit, **{**from_settings, **dict(options), "steps": steps}, **kwargs)


_OPTIM_KEYS = tuple(f.name for f in dataclasses.fields(OptimSettings) if f.name != "steps")
_OWN_KEYS = ("engine", "compile")

register_fitter(Fitter("map", fit_map, "MAP training: guided L1 / L2 / group penalties (bg.fit_map)"))
register_fitter(Fitter("svi", fit_svi, "SVI: a mean-field or low-rank Gaussian posterior (bg.fit_svi)",
                       posterior=True, options=("guide", "warm_start")))
register_fitter(Fitter("l0", fit_l0, "weights and hard-concrete L0 gates jointly (bg.fit_l0)",
                       schedules=False, kinds=("l0",)))
register_fitter(Fitter("relevance", fit_relevance,
                       "MAP with relevance guidance re-estimated every few steps (bg.fit_relevance)",
                       schedules=False, minibatch=False, kinds=("l2",), fixed_noise=True, adapts_guidance=True))
register_fitter(Fitter("marglik", fit_marglik,
                       "MAP with per-unit prior precisions learned from the Laplace evidence (bg.fit_marglik)",
                       schedules=False, kinds=("l2",), adapts_guidance=True, path_start="threshold"))
