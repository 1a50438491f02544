"""The built-in guidance profiles by name, for experiment files and the CLI.

One table: a new built-in profile is its module plus one line in [`get`][bayesguide.guidance.names.get] and one
member of [`ProfileName`][bayesguide.guidance.names.ProfileName].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bayesguide._options import Option
from bayesguide.guidance.marglik import marglik
from bayesguide.guidance.profiles import Profile, geometric, linear, partial, uniform
from bayesguide.guidance.relevance import relevance

__all__ = ["ProfileName", "get"]


class ProfileName(Option):
    """Names of the built-in profiles, for configuration files and the CLI."""

    LINEAR = "linear", "g_j = low + (1 - low) j / (n - 1): the tail dies first"
    GEOMETRIC = "geometric", "g_j = growth ** (j / (n - 1) - 1): sharper ordering"
    UNIFORM = "uniform", "g_j = 1: plain (unguided) regularization"
    PARTIAL = "partial", "0 on a protected fraction of units, 1 elsewhere (E & Gao)"
    RELEVANCE = "relevance", "ReLU(1 - s_j / scale) from loss sensitivity, re-estimated in training (Bonetta et al.)"
    MARGLIK = "marglik", "unit precisions learned from the Laplace evidence in training (Immer et al., MacKay ARD)"


_FACTORIES: dict[ProfileName, Callable[..., Profile]] = {
    ProfileName.LINEAR: linear,
    ProfileName.GEOMETRIC: geometric,
    ProfileName.UNIFORM: uniform,
    ProfileName.PARTIAL: partial,
    ProfileName.RELEVANCE: relevance,
    ProfileName.MARGLIK: marglik,
}


def get(name: str | ProfileName, **kwargs: Any) -> Profile:
    """Build a built-in profile by name (as used in experiment files).

    Examples
    --------
    >>> get("partial", fraction=0.5)(2)
    tensor([1., 0.], dtype=torch.float64)
    """
    member = ProfileName.resolve(name, "guidance profile")
    try:
        return _FACTORIES[member](**kwargs)
    except TypeError as err:
        raise ValueError(f"bad options for guidance profile {member.value!r}: {err}") from None
