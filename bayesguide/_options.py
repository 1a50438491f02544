"""String options as ``str`` enums, resolved by one small factory; named registries.

Users pass plain strings (``likelihood="categorical"``); the library validates them
against one list and the error message lists the choices. Each member carries its own
one-line description, declared beside it::

    class Schedule(Option):
        CONSTANT = "constant", "fixed learning rate"
        COSINE = "cosine", "cosine decay to lr/100"

`Registry` is the same idea for the extensible choices (prior families, fitters,
evidence estimators, Occam priors): entries registered by name, errors listing the
names. `env_flag` reads an on/off environment variable (``BAYESGUIDE_DEBUG``,
``BAYESGUIDE_SMOKE``) the one way. Leaf module: no bayesguide imports.
"""

from __future__ import annotations

import os
from enum import Enum
from typing import Generic, TypeVar

__all__ = ["OFF", "Option", "Registry", "env_flag"]

OFF = ("", "0", "false", "no", "off")
"""The values of an on/off environment variable that mean off (case and spaces ignored); unset is off too."""


def env_flag(name: str) -> bool:
    """Whether the on/off environment variable ``name`` is on.

    Parameters
    ----------
    name
        The variable, e.g. ``"BAYESGUIDE_SMOKE"``.

    Returns
    -------
    bool
        ``False`` when it is unset or one of `OFF` (``""``, ``"0"``, ``"false"``, ``"no"``,
        ``"off"``, in any case, with surrounding spaces); ``True`` for any other value.

    Examples
    --------
    >>> os.environ["BAYESGUIDE_EXAMPLE"] = "0"
    >>> env_flag("BAYESGUIDE_EXAMPLE")
    False
    >>> os.environ["BAYESGUIDE_EXAMPLE"] = "1"
    >>> env_flag("BAYESGUIDE_EXAMPLE")
    True
    >>> del os.environ["BAYESGUIDE_EXAMPLE"]
    """
    return os.environ.get(name, "").strip().lower() not in OFF

E = TypeVar("E", bound="Option")


class Option(str, Enum):
    """Base class of bayesguide's string options: ``value`` and a one-line ``description``."""

    _value_: str
    description: str

    def __new__(cls, value: str, description: str = "") -> Option:
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.description = description
        return obj

    def __str__(self) -> str:
        return self.value

    @classmethod
    def choices(cls) -> list[str]:
        """The accepted spellings, in declaration order."""
        return [member.value for member in cls]

    @classmethod
    def resolve(cls: type[E], value: str | E, what: str) -> E:
        """Return the member named ``value`` or raise a ``ValueError`` listing the choices.

        Parameters
        ----------
        value
            A member or its string value (case-insensitive).
        what
            What the option is called in the error message, e.g. ``"likelihood"``.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            key = value.strip().lower()
            for member in cls:
                if member.value == key:
                    return member
        raise ValueError(
            f"unknown {what} {value!r}; choose one of: {', '.join(cls.choices())}"
        )


T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind (prior families, fitters, estimators, Occam priors), in
    registration order; an unknown name is an error that lists the registered ones.

    Examples
    --------
    >>> shapes = Registry[int]("shape")
    >>> shapes.register("square", 4)
    4
    >>> shapes.get("Square"), shapes.names()
    (4, ['square'])
    >>> shapes.get("circle")
    Traceback (most recent call last):
    ...
    ValueError: unknown shape 'circle'; choose one of: square
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        """Add ``item`` under ``name`` (which must be new); return it."""
        if name in self._items:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        """Remove ``name`` (if registered): for tests that register a toy entry."""
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        """The entry registered as ``name`` (case and surrounding spaces ignored)."""
        key = name.strip().lower() if isinstance(name, str) else name
        if key not in self._items:
            raise ValueError(f"unknown {self.what} {name!r}; choose one of: {', '.join(self._items)}")
        return self._items[key]

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._items)

    def values(self) -> list[T]:
        """The registered entries, in registration order."""
        return list(self._items.values())

    def __contains__(self, name: object) -> bool:
        return name in self._items
