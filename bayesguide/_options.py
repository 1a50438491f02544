"""String options as ``str`` enums, resolved by one small factory.

Users pass plain strings (``likelihood="categorical"``); the library validates them
against one list and the error message lists the choices. Each member carries its own
one-line description, declared beside it::

    class Schedule(Option):
        CONSTANT = "constant", "fixed learning rate"
        COSINE = "cosine", "cosine decay to lr/100"

Leaf module: no bayesguide imports.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

__all__ = ["Option"]

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
