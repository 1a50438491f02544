"""The prior registry: every unit-prior family, by its ``kind`` name.

A family registers itself in its own file, once::

    register_prior(PriorFamily(kind="l2", prior=GuidedNormal,
                               summary="GuidedNormal: guided L2, λ Σ g_j ‖θ_j‖₂²"))

and from then on [`make_prior`][bayesguide.make_prior], experiment files (``[prior] kind`` and the
family's own keys), the CLI's method list, the runner's choice of fitter, candidate
fine-tuning, the evidence's Gaussian substitution and the compression benchmark all
know it. What a family declares:

* ``kind`` — its name in experiment files and [`make_prior`][bayesguide.make_prior];
* ``prior`` — the [`UnitPrior`][bayesguide.priors.base.UnitPrior] subclass, constructed as
  ``prior(strength, guidance, **options)``; it answers ``has_density`` and
  ``gaussian_counterpart()`` itself;
* ``summary`` — one line for ``--help``, errors and the docs;
* ``options`` — its experiment-file keys beyond ``kind``, ``strength`` and ``guidance``
  ([`PriorOption`][bayesguide.priors.registry.PriorOption]: the key, its default, its constructor parameter, a line of
  help);
* ``fitters`` — which registered fitter trains it for each ``[fit] method``
  (``{"map": "map", "svi": "svi"}`` for densities; see [`bayesguide.infer.registry`][]);
* ``positive_guidance`` — whether every guidance coefficient must be positive;
* ``score`` — the unit score its pruning paths rank units by by default (a name of
  [`bayesguide.pruning.scores`][]: ``"norm"``, or ``"horseshoe"`` for the horseshoe's
  posterior scales).

Examples
--------
>>> get_family("group").summary
'GuidedGroupLasso: guided group lasso, λ Σ g_j √p ‖θ_j‖₂'
>>> make_prior("sparse_group", 0.1, alpha=0.25)
GuidedSparseGroupLasso(strength=0.1, guidance=linear(), alpha=0.25)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bayesguide._options import Registry
from bayesguide.guidance import GuidanceSpec
from bayesguide.priors.base import UnitPrior

__all__ = ["PriorFamily", "PriorOption", "families", "get_family", "kinds", "make_prior", "register_prior",
           "unregister_prior"]


@dataclass(frozen=True)
class PriorOption:
    """An experiment-file key of one prior family (``[prior] key = value``).

    ``param`` is the constructor keyword it sets (default: the key itself), ``default``
    its value when the key is absent, ``summary`` one line of help; ``positive`` says
    the value must be > 0 (otherwise >= 0).
    """

    key: str
    default: float
    summary: str
    param: str = ""
    positive: bool = False

    @property
    def parameter(self) -> str:
        """The constructor keyword the key sets."""
        return self.param or self.key


@dataclass(frozen=True)
class PriorFamily:
    """One registered prior family (see the module docstring for each field)."""

    kind: str
    prior: type[UnitPrior]
    summary: str
    options: tuple[PriorOption, ...] = ()
    fitters: Mapping[str, str] = field(default_factory=lambda: {"map": "map", "svi": "svi"})
    positive_guidance: bool = False
    score: str = "norm"

    def build(self, strength: float, guidance: GuidanceSpec | None = None, **options: Any) -> UnitPrior:
        """The prior with ``strength``, ``guidance`` (family default when ``None``) and option keys."""
        known = {o.key: o for o in self.options}
        options = {k: v for k, v in options.items() if v is not None}
        unknown = sorted(set(options) - set(known))
        if unknown:
            owners = sorted(f.kind for f in _FAMILIES.values() if unknown[0] in {o.key for o in f.options})
            where = f"prior kind {' or '.join(repr(o) for o in owners)}" if owners else "no prior kind"
            raise ValueError(f"{unknown[0]} is only meaningful for {where}, not {self.kind!r}")
        kwargs = {known[k].parameter: v for k, v in options.items()}
        if guidance is None:
            return self.prior(strength, **kwargs)
        return self.prior(strength, guidance, **kwargs)

    def defaults(self) -> dict[str, float]:
        """``{key: default}`` of the family's options."""
        return {o.key: o.default for o in self.options}


_FAMILIES: Registry[PriorFamily] = Registry("prior kind")


def register_prior(family: PriorFamily) -> PriorFamily:
    """Add ``family`` to the registry (its ``kind`` must be new); return it.

    Raises
    ------
    ValueError
        If the kind is already registered or is not a plain lower-case name.
    """
    if not isinstance(family, PriorFamily):
        raise TypeError(f"register_prior takes a PriorFamily, got {type(family).__name__}")
    if not family.kind or not family.kind.replace("_", "").isalnum() or family.kind != family.kind.lower():
        raise ValueError(f"a prior kind must be a lower-case name (letters, digits, '_'), got {family.kind!r}")
    return _FAMILIES.register(family.kind, family)


def unregister_prior(kind: str) -> None:
    """Remove a registered family (for tests that register a toy family)."""
    _FAMILIES.unregister(kind)


def kinds() -> list[str]:
    """The registered kinds, in registration order."""
    return _FAMILIES.names()


def families() -> list[PriorFamily]:
    """The registered families, in registration order."""
    return _FAMILIES.values()


def get_family(kind: str | UnitPrior) -> PriorFamily:
    """The family of a kind name, or of a prior instance (by its class).

    Raises
    ------
    ValueError
        For an unknown kind (the message lists the registered ones) or an unregistered class.
    """
    if isinstance(kind, UnitPrior):
        for family in _FAMILIES.values():
            if type(kind) is family.prior:
                return family
        raise ValueError(f"{type(kind).__name__} is not a registered prior family; see register_prior")
    return _FAMILIES.get(kind)


def make_prior(kind: str, strength: float, guidance: GuidanceSpec | None = None, **options: Any) -> UnitPrior:
    """Build a prior family by its registered name (``"l1"``, ``"l2"``, ``"group"``, …).

    ``options`` are the family's experiment-file keys (``alpha`` for ``"sparse_group"``,
    ``tau0`` for ``"horseshoe"``, ``l0_weight_decay`` for ``"l0"``); ``None`` values are
    left at the family's defaults, and a key of another family is an error.

    Examples
    --------
    >>> make_prior("group", 0.1)
    GuidedGroupLasso(strength=0.1, guidance=linear())
    """
    return get_family(kind).build(strength, guidance, **options)
