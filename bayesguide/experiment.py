"""Experiment files: one TOML file describes a whole run (``bayesguide run FILE``).

Every key has a default, so an empty file is the built-in demo. Tables and keys::

    [data]
    source = "digits"          # digits | mnist1d | teacher | path/to/file.npz | path/to/file.csv
    task = "classification"    # classification | regression (built-ins know their own)
    target = ""                # the target column of a .csv file
    test_fraction = 0.25       # held out when the source has no test split
    seed = 0

    [network]
    hidden = [128, 128]        # widths of the hidden Linear layers
    activation = "relu"        # relu | tanh | sigmoid | gelu | silu | elu

    [prior]
    kind = "group"             # l1 | l2 | group | sparse_group | l0 | horseshoe
    strength = 1.0             # λ, the prior's rate (summed-NLL convention); l0: cost of an open gate
    guidance = "linear"        # linear | geometric | uniform | partial | relevance
    alpha = 0.5                # sparse_group only: the L1 share of the penalty (0: group lasso, 1: L1)
    tau0 = 0.1                 # horseshoe only: scale of the global half-Cauchy
    l0_weight_decay = 0.0      # l0 only: L2 penalty w ‖θ‖² on every weight and bias

    [fit]
    method = "map"             # map | svi
    steps = 1500
    lr = 0.003
    seed = 0
    batch_size = 0             # 0: full batch
    schedule = "constant"      # constant | cosine
    guide = "normal"           # svi: normal | lowrank

    [select]
    evidence = "laplace"       # laplace | elbo | iwae (elbo, iwae: svi fits only)
    occam = "guidance"         # guidance | params | flops | uniform
    kappa = 1.0
    n_candidates = 8           # points of the pruning path
    threshold = 0.001          # also the candidate without units scoring below this (0: none)
    fine_tune = 200            # MAP steps re-fitting each candidate (0: none)
    hessian = "auto"           # auto | full | kron | diag
    optimize_prior = true      # type-II ML of each candidate's prior scale
    loo = false                # PSIS-LOO columns (slower)

    [output]
    dir = "bayesguide-run"

An unknown table or key, or a value of the wrong type or outside its choices, is an
error naming the table, the key and the accepted values — raised before any work. The
choices come from the registries — prior families (``kind`` and their own keys),
fitters, evidence estimators, Occam priors — so a registered family or estimator is an
experiment-file choice without any change here.

**Methods.** ``[prior] kind`` and ``guidance`` pick the method and the fit:

* ``kind = "l1" | "l2" | "group" | "sparse_group"``: ``bg.fit_map`` or ``bg.fit_svi``
  (``[fit] method``); any guidance except ``relevance``.
* ``kind = "l0"`` (hard-concrete gates): ``bg.fit_l0``, a point estimate — needs
  ``[fit] method = "map"`` and ``schedule = "constant"``; ``strength`` is the cost of
  one open gate.
* ``kind = "horseshoe"`` (group horseshoe): ``bg.fit_svi`` — needs ``[fit] method =
  "svi"`` (it has no MAP) and positive guidance (not ``partial`` or ``relevance``);
  ``strength`` is the rate of the output layer's plain L2 prior.
* ``guidance = "relevance"`` (sensitivity-driven guidance, re-estimated every 10
  steps): ``bg.fit_relevance`` — needs ``kind = "l2"``, ``[fit] method = "map"``,
  ``batch_size = 0``, ``schedule = "constant"`` and a classification task (a regression
  model learns its noise, which ``fit_relevance`` cannot).

These rules are not written here: each prior family declares which fitter trains it for
each ``[fit] method`` and each fitter what it needs (:mod:`bayesguide.priors.registry`,
:mod:`bayesguide.infer.registry`); a combination outside them is an error naming the
keys and what to use instead. A family's own keys (``alpha``, ``tau0``,
``l0_weight_decay``) may be omitted or left at their defaults for any kind; set to
another value for a kind that does not use them they are an error, not silently ignored.
How candidates are re-fitted and scored: :mod:`bayesguide.pipeline`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bayesguide.comparison import occam_priors
from bayesguide.curvature import HessianStructure
from bayesguide.guidance import ProfileName, adaptive_fitter
from bayesguide.guidance import get as get_guidance
from bayesguide.infer import Fitter, OptimSettings, Schedule, fitter_for, get_fitter
from bayesguide.marglik import estimators, get_estimator
from bayesguide.pipeline import Selection
from bayesguide.posterior import GuideKind
from bayesguide.priors import PriorFamily, UnitPrior, families, get_family, kinds

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["ACTIVATIONS", "Experiment", "ExperimentError", "check_task", "load_experiment"]


class ExperimentError(ValueError):
    """An invalid experiment file; the message names the table, the key and the choices."""


#: the ``[network] activation`` choices
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU,
}


def _choices() -> dict[tuple[str, str], tuple[str, ...]]:
    """The accepted values of the keys with a fixed set of them (read from the registries now)."""
    return {
        ("data", "task"): ("classification", "regression"),
        ("network", "activation"): tuple(ACTIVATIONS),
        ("prior", "kind"): tuple(kinds()),
        ("prior", "guidance"): tuple(ProfileName.choices()),
        ("fit", "method"): ("map", "svi"),
        ("fit", "schedule"): tuple(Schedule.choices()),
        ("fit", "guide"): tuple(GuideKind.choices()),
        ("select", "evidence"): tuple(e.name for e in estimators()),
        ("select", "occam"): tuple(o.name for o in occam_priors()),
        ("select", "hessian"): ("auto", *HessianStructure.choices()),
    }


_POSITIVE = {("prior", "strength"), ("fit", "steps"), ("fit", "lr"), ("select", "n_candidates")}


@dataclass(frozen=True)
class DataConfig:
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
    """The ``[prior]`` table: ``kind``, ``strength``, ``guidance`` and the family's own keys."""

    kind: str = "group"
    strength: float = 1.0
    guidance: str = "linear"
    #: the family's own keys (``alpha``, ``tau0``, ``l0_weight_decay``, …), defaults filled in
    options: dict[str, float] = field(default_factory=dict)

    @property
    def family(self) -> PriorFamily:
        return get_family(self.kind)

    def build(self) -> UnitPrior:
        """The unit prior this table describes."""
        return self.family.build(self.strength, get_guidance(self.guidance), **self.options)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "strength": self.strength, "guidance": self.guidance, **self.options}


@dataclass(frozen=True)
class FitConfig:
    method: str = "map"
    steps: int = 1500
    lr: float = 0.003
    seed: int = 0
    batch_size: int = 0
    schedule: str = "constant"
    guide: str = "normal"


@dataclass(frozen=True)
class SelectConfig:
    evidence: str = "laplace"
    occam: str = "guidance"
    kappa: float = 1.0
    n_candidates: int = 8
    threshold: float = 0.001
    fine_tune: int = 200
    hessian: str = "auto"
    optimize_prior: bool = True
    loo: bool = False


@dataclass(frozen=True)
class OutputConfig:
    dir: str = "bayesguide-run"


_TABLES: dict[str, type] = {
    "data": DataConfig, "network": NetworkConfig, "prior": PriorConfig,
    "fit": FitConfig, "select": SelectConfig, "output": OutputConfig,
}


@dataclass(frozen=True)
class Experiment:
    """A validated experiment; ``to_dict()`` gives every key with its value."""

    data: DataConfig = field(default_factory=DataConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    prior: PriorConfig = field(default_factory=lambda: PriorConfig(options=get_family("group").defaults()))
    fit: FitConfig = field(default_factory=FitConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for table in _TABLES:
            part = getattr(self, table)
            out[table] = part.to_dict() if isinstance(part, PriorConfig) else {
                f.name: getattr(part, f.name) for f in fields(part)}
        return out

    def fitter(self) -> Fitter:
        """The registered fitter the ``[prior]`` and ``[fit]`` tables pick."""
        return fitter_for(self.prior.build(), self.fit.method)

    def optim(self, progress: bool = True) -> OptimSettings:
        """The ``[fit]`` table as optimisation settings (the keys the fitter takes)."""
        fitter = self.fitter()
        f = self.fit
        options: dict[str, Any] = {"steps": f.steps, "lr": f.lr, "seed": f.seed, "progress": progress}
        if fitter.minibatch:
            options["batch_size"] = f.batch_size or None
        if fitter.schedules:
            options["schedule"] = f.schedule
        return OptimSettings(**options)

    def fitter_options(self) -> dict[str, Any]:
        """The ``[fit]`` keys that are the fitter's own keywords (e.g. ``guide`` for SVI)."""
        return {k: getattr(self.fit, k) for k in self.fitter().options}

    def selection(self, progress: bool = True) -> Selection:
        """The ``[select]`` table as a :class:`~bayesguide.pipeline.Selection`."""
        s = self.select
        return Selection(
            n_candidates=s.n_candidates, threshold=s.threshold or None, fine_tune=s.fine_tune,
            fine_tune_lr=self.fit.lr, seed=self.fit.seed, evidence=s.evidence, hessian=s.hessian,
            optimize_prior=s.optimize_prior, occam=s.occam, kappa=s.kappa, loo=s.loo, progress=progress,
        )

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Experiment:
        """Validate a parsed TOML document (see the module docstring for the tables)."""
        unknown = sorted(set(raw) - set(_TABLES))
        if unknown:
            raise ExperimentError(f"unknown table [{unknown[0]}]; tables: {', '.join('[' + t + ']' for t in _TABLES)}")
        parts: dict[str, Any] = {}
        for table, config in _TABLES.items():
            values = raw.get(table, {})
            if not isinstance(values, dict):
                raise ExperimentError(f"[{table}] must be a table, got {type(values).__name__}")
            parts[table] = _prior_table(values) if table == "prior" else _table(table, config, values)
        exp = cls(**parts)
        _check_method(exp)
        return exp


def _type_name(t: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(t, "a list of integers")


def _value(table: str, key: str, value: Any, default: Any) -> Any:
    """``value`` checked against the type of ``default``, the choices and the sign rules."""
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is list:
        if not (isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool)
                                                          and v >= 1 for v in value)):
            raise ExperimentError(f"[{table}] {key} must be a non-empty list of positive integers, got {value!r}")
    elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ExperimentError(f"[{table}] {key} must be {_type_name(kind)}, got {value!r}")
    choices = _choices().get((table, key))
    if choices is not None and value not in choices:
        raise ExperimentError(f"[{table}] {key} = {value!r} is not accepted; choose one of: {', '.join(choices)}")
    if (table, key) in _POSITIVE and value <= 0:
        raise ExperimentError(f"[{table}] {key} must be > 0, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise ExperimentError(f"[{table}] {key} must be >= 0, got {value!r}")
    return value


def _table(table: str, config: type, values: dict[str, Any]) -> Any:
    known = [f.name for f in fields(config)]
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ExperimentError(f"[{table}] has no key {key!r}; keys: {', '.join(known)}")
        out[key] = _value(table, key, value, getattr(config(), key))
    if table == "data" and "test_fraction" in out and not 0 < out["test_fraction"] < 1:
        raise ExperimentError(f"[data] test_fraction must lie in (0, 1), got {out['test_fraction']!r}")
    if table == "select" and out.get("n_candidates", 2) < 2:
        raise ExperimentError("[select] n_candidates must be at least 2")
    return config(**out)


def _prior_table(values: dict[str, Any]) -> PriorConfig:
    """The ``[prior]`` table: the fixed keys, then the registered families' own keys."""
    owners = {o.key: (fam, o) for fam in families() for o in fam.options}
    fixed = {k: v for k, v in values.items() if k in ("kind", "strength", "guidance")}
    base = _table("prior", PriorConfig, fixed)
    family = get_family(base.kind)
    own = family.defaults()
    for key, value in values.items():
        if key in fixed:
            continue
        if key not in owners:
            keys = ["kind", "strength", "guidance", *owners]
            raise ExperimentError(f"[prior] has no key {key!r}; keys: {', '.join(keys)}")
        owner, option = owners[key]
        number = _value("prior", key, value, float(option.default))
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
    config = PriorConfig(base.kind, base.strength, base.guidance, own)
    try:
        config.build()
    except (ValueError, TypeError) as err:
        raise ExperimentError(f"[prior] {err}") from None
    return config


def _subject(exp: Experiment, adaptive: str | None) -> str:
    return f'[prior] guidance = "{exp.prior.guidance}"' if adaptive else f'[prior] kind = "{exp.prior.kind}"'


def _check_method(exp: Experiment) -> None:
    """The cross-table rules, read from the prior family and the fitter it names."""
    prior, fit = exp.prior.build(), exp.fit
    family = exp.prior.family
    adaptive = adaptive_fitter(prior.guidance)
    subject = _subject(exp, adaptive)
    if family.positive_guidance:
        profile = prior.guidance
        if adaptive or (callable(profile) and bool((profile(16) <= 0).any())):
            positive = [n for n in ProfileName.choices()
                        if not adaptive_fitter(get_guidance(n)) and bool((get_guidance(n)(16) > 0).all())]
            raise ExperimentError(
                f'[prior] kind = "{exp.prior.kind}" needs positive guidance coefficients (they divide the local '
                f"scales), not guidance = {exp.prior.guidance!r}; use {', '.join(positive)}"
            )
    if adaptive is None and fit.method not in family.fitters:
        method = next(iter(family.fitters))
        raise ExperimentError(
            f'{subject} has no {fit.method.upper()} fit: it is trained by bg.fit_{family.fitters[method]} with '
            f'[fit] method = "{method}"; set [fit] method = "{method}"'
        )
    fitter = exp.fitter() if adaptive is None else _adaptive_fitter(exp, adaptive, subject)
    if not fitter.minibatch and fit.batch_size != 0:
        raise ExperimentError(f"{subject} (bg.fit_{fitter.name}) trains on the full batch: set [fit] batch_size = 0")
    if not fitter.schedules and fit.schedule != "constant":
        raise ExperimentError(f'{subject} (bg.fit_{fitter.name}) has no learning-rate schedule: '
                              f'set [fit] schedule = "constant"')
    estimator = get_estimator(exp.select.evidence)
    if estimator.needs_posterior and not fitter.posterior:
        raise ExperimentError(
            f'[select] evidence = "{estimator.name}" needs a variational posterior, but [fit] method = '
            f'"{fit.method}" fits a point estimate: use evidence = "laplace", or method = "svi" (with a prior '
            f'that has an SVI fit)'
        )
    source = exp.data.source
    if source.endswith((".npz", ".csv")):
        check_task(exp, exp.data.task)
    elif source == "teacher":  # the built-ins know their own task; the runner checks again
        check_task(exp, "regression")


def _adaptive_fitter(exp: Experiment, adaptive: str, subject: str) -> Fitter:
    """The fitter of an adaptive guidance, after checking the kind and the method it needs."""
    fitter = get_fitter(adaptive)
    if fitter.kinds is not None and exp.prior.kind not in fitter.kinds:
        need = " or ".join(f'"{k}"' for k in fitter.kinds)
        raise ExperimentError(
            f"{subject} is trained by bg.fit_{fitter.name}, which re-estimates the precisions of kind = {need}: "
            f"set kind = {need}, not {exp.prior.kind!r}"
        )
    if fitter.method != exp.fit.method:
        raise ExperimentError(f'{subject} is trained by bg.fit_{fitter.name} ({fitter.method.upper()}): '
                              f'set [fit] method = "{fitter.method}"')
    return fitter


def check_task(exp: Experiment, task: str) -> None:
    """A fitter that needs a fixed noise cannot fit a regression (experiment files learn σ)."""
    prior = exp.prior.build()
    adaptive = adaptive_fitter(prior.guidance)
    fitter = get_fitter(adaptive) if adaptive else exp.fitter()
    if fitter.fixed_noise and task == "regression":
        raise ExperimentError(
            f"{_subject(exp, adaptive)} needs a classification task: a regression model learns its "
            f"noise σ, which bg.fit_{fitter.name} cannot (use the Python API with a fixed noise)"
        )


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
    ...     _ = f.write('[prior]\\nkind = "l1"\\nstrength = 0.3\\n')
    >>> load_experiment(f.name).prior
    PriorConfig(kind='l1', strength=0.3, guidance='linear', options={})
    >>> os.unlink(f.name)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"experiment file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ExperimentError(f"{path} is not valid TOML: {err}") from None
    return Experiment.from_dict(raw)
