"""The tables of an experiment file: one frozen dataclass per table, and their validation.

Every key has a type, a default and, for some, a fixed set of choices — read from the
registries at validation time (prior kinds and their own keys, evidence estimators,
Occam priors), so a registered family or estimator is accepted without a change here.
`parse_table` and [`parse_prior_table`][bayesguide.experiment.tables.parse_prior_table] check one table's keys and
values
(types, choices, finite numbers, signs, size limits); the rules that involve several
tables are [`bayesguide.experiment.rules`][].
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn

from bayesguide.comparison import occam_priors
from bayesguide.curvature import HessianStructure
from bayesguide.guidance import ProfileName
from bayesguide.guidance import get as get_guidance
from bayesguide.infer import Schedule
from bayesguide.marglik import estimators
from bayesguide.model.device import check_device
from bayesguide.posterior import GuideKind
from bayesguide.priors import PriorFamily, UnitPrior, families, get_family, kinds

__all__ = [
    "ACTIVATIONS", "AUTO_OR_NUMBER", "DEFAULT_STEPS", "EVIDENCE_DRIVEN", "LIMITS", "MAX_LAYERS", "MAX_WIDTH",
    "POSITIVE", "STEPS", "TABLES", "DataConfig", "ExperimentError", "FitConfig", "NetworkConfig", "OutputConfig",
    "PriorConfig", "SelectConfig", "choices", "parse_device", "parse_prior_table", "parse_table", "parse_value",
    "resolve_guidance", "resolve_steps", "resolve_warm_start",
]


class ExperimentError(ValueError):
    """An invalid experiment file; the message names the table, the key and the choices."""


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU,
}
"""The ``[network] activation`` choices."""


def choices() -> dict[tuple[str, str], tuple[str, ...]]:
    """The accepted values of the keys with a fixed set of them (read from the registries now)."""
    return {
        ("data", "task"): ("classification", "regression"),
        ("network", "activation"): tuple(ACTIVATIONS),
        ("prior", "kind"): tuple(kinds()),
        ("prior", "guidance"): ("auto", *ProfileName.choices()),
        ("fit", "method"): ("map", "svi"),
        ("fit", "schedule"): tuple(Schedule.choices()),
        ("fit", "guide"): tuple(GuideKind.choices()),
        ("select", "evidence"): tuple(e.name for e in estimators()),
        ("select", "occam"): tuple(o.name for o in occam_priors()),
        ("select", "hessian"): ("auto", *HessianStructure.choices()),
    }


POSITIVE = {("prior", "strength"), ("fit", "steps"), ("fit", "lr"), ("select", "n_candidates")}

LIMITS = {("fit", "steps"): 10**9, ("fit", "batch_size"): 10**9, ("select", "fine_tune"): 10**9,
          ("select", "patience"): 10**9, ("select", "bisect"): 100, ("select", "round_to"): 10**6}
"""The largest accepted value of the size keys: beyond these a run cannot finish (or allocate) anyway."""

AUTO_OR_NUMBER = {("select", "kappa"): 1.0, ("fit", "steps"): 1500, ("fit", "warm_start"): 0}
"""Keys that take ``"auto"`` or a number (validated as a number with this default)."""

EVIDENCE_DRIVEN = "marglik"
"""The guidance ``guidance = "auto"`` resolves to for ``kind = "l2"`` fitted by MAP: evidence-driven fitting."""

STEPS = {EVIDENCE_DRIVEN: 6000}
"""``[fit] steps = "auto"`` by guidance; every other guidance gets `DEFAULT_STEPS`.

Evidence-driven fitting needs the longer fit: on the teacher–student benchmark
(``benchmarks/teacher_student.py``) 1,500 steps left units alive that 6,000 collapse
(71 % of the teacher widths found exactly against 88 %, docs/benchmarks.md)."""

DEFAULT_STEPS = 1500
"""``[fit] steps = "auto"`` for every guidance not in `STEPS`."""


def resolve_guidance(kind: str, method: str = "map") -> str:
    """``[prior] guidance = "auto"``: ``"marglik"`` (evidence-driven) for ``"l2"`` fitted by MAP, else ``"linear"``.

    Evidence-driven fitting learns each unit's prior precision from the Laplace evidence
    ([`bayesguide.fit_marglik`][]), so the prior strength is not a setting the user must
    tune; it exists for the Gaussian family and MAP fits only.

    Examples
    --------
    >>> resolve_guidance("l2"), resolve_guidance("group"), resolve_guidance("l2", "svi")
    ('marglik', 'linear', 'linear')
    """
    return EVIDENCE_DRIVEN if kind == "l2" and method == "map" else "linear"


def resolve_steps(guidance: str) -> int:
    """``[fit] steps = "auto"``: 6,000 for evidence-driven fitting, 1,500 otherwise (`STEPS`).

    Examples
    --------
    >>> resolve_steps("marglik"), resolve_steps("linear")
    (6000, 1500)
    """
    return STEPS.get(guidance, DEFAULT_STEPS)


WARM_START_SHARE = 4
"""``[fit] warm_start = "auto"`` for a prior trained by SVI only: one step in this many is MAP."""


def resolve_warm_start(kind: str, method: str, steps: int) -> int:
    """``[fit] warm_start = "auto"``: a quarter of ``steps`` for a prior that has no MAP fit, 0 otherwise.

    The group horseshoe is trained by SVI only (its MAP is degenerate). From a random
    initialisation its KL term switches units off before the data have made them useful;
    starting its posterior from a quarter of the steps of MAP under the Gaussian its
    Laplace evidence uses raised the dense network's posterior-mean test accuracy on
    every task of ``benchmarks/compression.py`` (MNIST-1D MLP 42.5 → 55.1 %, digits MLP
    82.9 → 93.5 %, MNIST-1D CNN 74.3 → 92.3 %; docs/benchmarks.md). Other SVI fits (of a
    density prior, which has a MAP) start from the initialisation unless the file sets
    a number: for the benchmark's uniform group lasso (λ′ = 1e-4, seed 0) a quarter of
    the steps of MAP first moved the posterior mean by under a point (MNIST-1D 52.7 →
    53.6 %, digits 97.3 → 97.8 %; ``python benchmarks/svi_warm_start.py``).

    Examples
    --------
    >>> resolve_warm_start("horseshoe", "svi", 1500), resolve_warm_start("group", "svi", 1500)
    (375, 0)
    """
    if method != "svi" or "map" in get_family(kind).fitters:
        return 0
    return steps // WARM_START_SHARE


MAX_WIDTH, MAX_LAYERS = 10**6, 1000
"""The largest hidden width and the most hidden layers ``[network] hidden`` may list."""


@dataclass(frozen=True)
class DataConfig:
    """The `[data]` table: where the data come from and what task they pose."""

    source: str = "digits"
    task: str = "classification"
    target: str = ""
    test_fraction: float = 0.25
    seed: int = 0


@dataclass(frozen=True)
class NetworkConfig:
    hidden: list[int] = field(default_factory=lambda: [128, 128])
    activation: str = "relu"

    def build(self, n_in: int, n_out: int, seed: int) -> nn.Sequential:
        """The MLP ``n_in``-hidden…-``n_out``, initialised from ``torch.manual_seed(seed)``."""
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        width = n_in
        for h in self.hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[self.activation]()]
            width = h
        layers.append(nn.Linear(width, n_out))
        return nn.Sequential(*layers)


@dataclass(frozen=True)
class PriorConfig:
    """The ``[prior]`` table: ``kind``, ``strength``, ``guidance`` and the family's own keys.

    The defaults are evidence-driven fitting: ``kind = "l2"`` with ``guidance = "auto"``,
    which resolves to ``"marglik"`` for a MAP fit (`resolve_guidance`); any other kind
    gets ``"linear"`` guidance unless the table names one.
    """

    kind: str = "l2"
    strength: float = 1.0
    guidance: str = "auto"
    options: dict[str, float] = field(default_factory=dict)
    """The family's own keys (``alpha``, ``tau0``, ``l0_weight_decay``, …), defaults filled in."""

    @property
    def family(self) -> PriorFamily:
        return get_family(self.kind)

    def build(self) -> UnitPrior:
        """The unit prior this table describes."""
        guidance = resolve_guidance(self.kind) if self.guidance == "auto" else self.guidance
        return self.family.build(self.strength, get_guidance(guidance), **self.options)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "strength": self.strength, "guidance": self.guidance, **self.options}


@dataclass(frozen=True)
class FitConfig:
    """The `[fit]` table: the fitter and its optimisation settings."""

    method: str = "map"
    steps: int | str = "auto"
    """MAP / SVI steps; ``"auto"`` (`resolve_steps`): 6,000 for evidence-driven fitting, 1,500 otherwise."""
    lr: float = 0.003
    seed: int = 0
    batch_size: int = 0
    schedule: str = "constant"
    guide: str = "normal"
    warm_start: int | str = "auto"
    """svi only: the first this many of ``steps`` are MAP steps the posterior starts from (``bg.fit_svi``);
    ``"auto"`` (`resolve_warm_start`): a quarter of them for the horseshoe, 0 otherwise."""
    device: str = ""
    """Where the fit, the fine-tuning and the evidence run: "" (the CPU), "cpu", "cuda" or "cuda:N"."""


DEVICE_FORM = re.compile(r"cpu|cuda(:\d+)?")
"""The forms ``[fit] device`` accepts (besides "", the default: the CPU)."""


def parse_device(value: str) -> str:
    """``[fit] device``: ``""`` (the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``, available on this machine.

    Raises
    ------
    ExperimentError
        For another string (the accepted forms listed), or a CUDA device this machine
        does not have (checked now, at validation, not when the run gets there).
    """
    if value == "":
        return value
    if DEVICE_FORM.fullmatch(value) is None:
        raise ExperimentError(f'[fit] device = {value!r} is not accepted; use "" (the default: the CPU), "cpu", '
                              f'"cuda" or "cuda:N" (N the index of a GPU)')
    try:
        check_device(value)
    except ValueError as err:
        raise ExperimentError(f"[fit] device = {value!r} cannot be used: {str(err).split(': ', 1)[-1]}") from None
    return value


@dataclass(frozen=True)
class SelectConfig:
    """The `[select]` table: the pruning path, the re-fits and how candidates are scored."""

    evidence: str = "laplace"
    occam: str = "guidance"
    kappa: float | str = "auto"
    n_candidates: int = 8
    threshold: float = 0.001
    bisect: int = 2
    fine_tune: int = 3000
    patience: int = 200
    round_to: int = 0
    merge: float = 0.1
    hessian: str = "auto"
    optimize_prior: bool = True
    loo: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.merge < 1.0:
            raise ExperimentError(f"[select] merge must be a tolerance in [0, 1) (e.g. 0.1; 0: no merging), "
                                  f"got {self.merge!r}")


@dataclass(frozen=True)
class OutputConfig:
    """The `[output]` table: the run directory."""

    dir: str = "bayesguide-run"

    def __post_init__(self) -> None:
        if not self.dir.strip():  # Path("") is the working directory: never write a run there by accident
            raise ExperimentError(f"[output] dir must name a directory, got {self.dir!r}")


TABLES: dict[str, type] = {
    "data": DataConfig, "network": NetworkConfig, "prior": PriorConfig,
    "fit": FitConfig, "select": SelectConfig, "output": OutputConfig,
}




def _type_name(t: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(t, "a list of integers")


def parse_value(table: str, key: str, value: Any, default: Any) -> Any:
    """``value`` checked against the type of ``default``, the choices and the sign rules."""
    if (table, key) in AUTO_OR_NUMBER:
        if value == "auto":
            return value
        default = AUTO_OR_NUMBER[(table, key)]
        if isinstance(value, str):
            raise ExperimentError(f"[{table}] {key} must be \"auto\" or {_type_name(type(default))}, got {value!r}")
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is list:
        if not (isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool)
                                                          and v >= 1 for v in value)):
            raise ExperimentError(f"[{table}] {key} must be a non-empty list of positive integers, got {value!r}")
        if len(value) > MAX_LAYERS or max(value) > MAX_WIDTH:
            raise ExperimentError(f"[{table}] {key} must list at most {MAX_LAYERS:,} widths of at most "
                                  f"{MAX_WIDTH:,} units, got {len(value):,} width(s), the largest {max(value):,}")
    elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ExperimentError(f"[{table}] {key} must be {_type_name(kind)}, got {value!r}")
    accepted = choices().get((table, key))
    if accepted is not None and value not in accepted:
        raise ExperimentError(f"[{table}] {key} = {value!r} is not accepted; choose one of: {', '.join(accepted)}")
    if kind is float and not math.isfinite(value):  # NaN passes every comparison below
        raise ExperimentError(f"[{table}] {key} must be a finite number, got {value!r}")
    if (table, key) in POSITIVE and value <= 0:
        raise ExperimentError(f"[{table}] {key} must be > 0, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise ExperimentError(f"[{table}] {key} must be >= 0, got {value!r}")
    limit = LIMITS.get((table, key))
    if limit is not None and value > limit:
        raise ExperimentError(f"[{table}] {key} must be at most {limit:,}, got {value!r}")
    return value


def parse_table(table: str, config: type, values: dict[str, Any]) -> Any:
    known = [f.name for f in fields(config)]
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ExperimentError(f"[{table}] has no key {key!r}; keys: {', '.join(known)}")
        out[key] = parse_value(table, key, value, getattr(config(), key))
    if table == "data" and "test_fraction" in out and not 0 < out["test_fraction"] < 1:
        raise ExperimentError(f"[data] test_fraction must lie in (0, 1), got {out['test_fraction']!r}")
    if table == "fit" and "device" in out:
        out["device"] = parse_device(out["device"])
    if table == "select" and out.get("n_candidates", 2) < 2:
        raise ExperimentError("[select] n_candidates must be at least 2")
    return config(**out)


def parse_prior_table(values: dict[str, Any], method: str = "map") -> PriorConfig:
    """The ``[prior]`` table: the fixed keys, then the registered families' own keys.

    ``guidance = "auto"`` (the default) is resolved here, for the ``[fit] method``
    (`resolve_guidance`).
    """
    owners = {o.key: (fam, o) for fam in families() for o in fam.options}
    fixed = {k: v for k, v in values.items() if k in ("kind", "strength", "guidance")}
    base = parse_table("prior", PriorConfig, fixed)
    family = get_family(base.kind)
    own = family.defaults()
    for key, value in values.items():
        if key in fixed:
            continue
        if key not in owners:
            keys = ["kind", "strength", "guidance", *owners]
            raise ExperimentError(f"[prior] has no key {key!r}; keys: {', '.join(keys)}")
        owner, option = owners[key]
        number = parse_value("prior", key, value, float(option.default))
        if option.positive and number <= 0:
            raise ExperimentError(f"[prior] {key} must be > 0, got {value!r}")
        if key not in own:
            if number != option.default:
                raise ExperimentError(
                    f"[prior] {key} = {value!r} is only used by kind = {owner.kind!r}, not {base.kind!r}; "
                    f"remove it or set kind = {owner.kind!r}"
                )
            continue
        own[key] = number
    guidance = resolve_guidance(base.kind, method) if base.guidance == "auto" else base.guidance
    config = PriorConfig(base.kind, base.strength, guidance, own)
    try:
        config.build()
    except (ValueError, TypeError) as err:
        raise ExperimentError(f"[prior] {err}") from None
    return config
