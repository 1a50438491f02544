"""``compile=True``: the MAP objective compiled by ``torch.compile``, what it cost, and when it cannot work.

[`fit_map`][bayesguide.fit_map] compiles its objective on request (off by default:
``benchmarks/map_overhead.py --compile`` measures whether it pays on a machine). This
module holds the pieces around ``torch.compile`` itself: the checks made before any step
(`check_compile`), the wrapper that compiles a function (`compiled`) and the record of
what compiling cost (`CompileReport`, ``fit.extras["compile"]``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from bayesguide.infer.loop import LoopOutput
from bayesguide.infer.result import register_extra

__all__ = ["CompileReport", "check_compile", "compile_extras", "compiled"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class CompileReport:
    """What compiling the objective cost (``fit.extras["compile"]`` of a ``compile=True`` fit).

    Attributes
    ----------
    setup_seconds
        Wall time of building the compiled objective, before the first step (the first
        compiled fit of a process imports ``torch.compile``'s machinery here).
    first_step_seconds
        Wall time of the fit's first step, during which ``torch.compile`` traced and
        compiled the objective's forward and backward (one ordinary step included;
        compare with ``fit.wall_time / fit.steps``). A later fit of the same network
        shapes in the same process reuses the compiled code and pays far less.
    """

    setup_seconds: float
    first_step_seconds: float

    @property
    def seconds(self) -> float:
        """``setup_seconds + first_step_seconds``: what compiling added, to one step's time."""
        return self.setup_seconds + self.first_step_seconds

    def __str__(self) -> str:
        return (f"compiled objective: {self.seconds:.2f} s (setup {self.setup_seconds:.2f} s, first step "
                f"{self.first_step_seconds:.2f} s, one step included)")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CompileReport:
        return cls(setup_seconds=float(data["setup_seconds"]), first_step_seconds=float(data["first_step_seconds"]))


register_extra("compile", CompileReport.from_json)


def check_compile(compile: bool, engine: str, device: torch.device) -> None:
    """Refuse ``compile`` where it cannot work, naming the reason, before any step.

    ``compile`` must be a bool; ``True`` needs ``engine`` to be ``"fast"`` (Pyro's
    tracing is not compiled) and
    ``torch.compile``'s code generator: a C++ compiler for the CPU (``$CXX``, else
    ``g++`` / ``clang++`` / ``c++`` on the ``PATH``), Triton for a GPU; ``device`` is
    where the steps run. (A Python that ``torch.compile`` does not support is refused by
    ``torch.compile`` itself, also before any step.)
    """
    if not isinstance(compile, bool):
        raise TypeError(f"compile must be True or False, got {compile!r}")
    if not compile:
        return
    if engine != "fast":
        raise ValueError(f"compile=True needs engine='fast': engine={engine!r} runs Pyro's tracing, "
                         f"which torch.compile does not compile")
    if device.type == "cuda":
        if importlib.util.find_spec("triton") is None:
            raise RuntimeError("compile=True on a GPU needs Triton, torch.compile's GPU code generator, which is "
                               "not installed; install it or use compile=False")
        return
    candidates = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "clang++", "c++"]
    if not any(shutil.which(c) for c in candidates):
        raise RuntimeError(
            f"compile=True on the CPU needs a C++ compiler for torch.compile's code generator, and none of "
            f"{', '.join(candidates)} was found on the PATH; install one or use compile=False"
        )


def compile_extras(extras: dict[str, Any] | None, compile: bool, out: LoopOutput,
                    setup: float) -> dict[str, Any] | None:
    """``extras`` with the [`CompileReport`][bayesguide.infer.compile.CompileReport] of a compiled run."""
    if not compile:
        return extras
    return dict(extras or {}) | {"compile": CompileReport(setup, float(out.extra["first_step_seconds"]))}


def compiled(fn: F) -> F:
    """``torch.compile(fn)``, called with torch's warnings against its own code silenced.

    See `torch_internal_warnings_ignored`.
    """
    with torch_internal_warnings_ignored():
        compiled_fn = torch.compile(fn)

    def call(*args: Any, **kwargs: Any) -> Any:
        with torch_internal_warnings_ignored():  # compilation happens at a call (the first, or a new shape)
            return compiled_fn(*args, **kwargs)

    return call  # type: ignore[return-value]


@contextlib.contextmanager
def torch_internal_warnings_ignored() -> Iterator[None]:
    """Ignore two deprecation warnings torch's compiler raises against its own code.

    Its code generator imports a module of torch's that uses the deprecated ``torch.jit``
    API, and its tracer instantiates ``autograd.Function`` classes (a user's layer or
    prior may use them) in a way torch itself deprecates. Both are torch's to fix and
    would stop a run where warnings are errors.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`torch.jit.script_method` is deprecated",
                                category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*should not be instantiated. Methods on autograd functions",
                                category=DeprecationWarning)
        yield
