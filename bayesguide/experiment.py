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
error naming the table, the key and the accepted values — raised before any work.

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

A combination outside these rules is an error naming the keys and what to use instead.
The method-specific keys ``alpha`` (sparse_group), ``tau0`` (horseshoe) and
``l0_weight_decay`` (l0) may be omitted or left at their defaults for any kind; setting
one to another value for a kind that does not use it is an error (it would otherwise
be silently ignored). ``partial`` guidance (coefficient 0, a flat prior, on the
protected units) works with every kind except horseshoe. Every method's candidates get
a Laplace evidence (:mod:`bayesguide.marglik.laplace` documents which Gaussian prior);
with ``fine_tune`` the l0 and horseshoe candidates are re-fitted by MAP under that
Gaussian prior, ``GuidedNormal(strength, uniform)``, since their own priors have no MAP
fit; the other kinds are re-fitted under their own prior.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Experiment", "ExperimentError", "check_relevance_task", "load_experiment"]


class ExperimentError(ValueError):
    """An invalid experiment file; the message names the table, the key and the choices."""


_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("data", "task"): ("classification", "regression"),
    ("network", "activation"): ("relu", "tanh", "sigmoid", "gelu", "silu", "elu"),
    ("prior", "kind"): ("l1", "l2", "group", "sparse_group", "l0", "horseshoe"),
    ("prior", "guidance"): ("linear", "geometric", "uniform", "partial", "relevance"),
    ("fit", "method"): ("map", "svi"),
    ("fit", "schedule"): ("constant", "cosine"),
    ("fit", "guide"): ("normal", "lowrank"),
    ("select", "evidence"): ("laplace", "elbo", "iwae"),
    ("select", "occam"): ("guidance", "params", "flops", "uniform"),
    ("select", "hessian"): ("auto", "full", "kron", "diag"),
}
_POSITIVE = {("prior", "strength"), ("prior", "tau0"), ("fit", "steps"), ("fit", "lr"), ("select", "n_candidates")}
#: keys of [prior] that only one kind uses
KIND_KEYS = {"alpha": "sparse_group", "tau0": "horseshoe", "l0_weight_decay": "l0"}


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


@dataclass(frozen=True)
class PriorConfig:
    kind: str = "group"
    strength: float = 1.0
    guidance: str = "linear"
    alpha: float = 0.5
    tau0: float = 0.1
    l0_weight_decay: float = 0.0


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
    prior: PriorConfig = field(default_factory=PriorConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

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
            parts[table] = _table(table, config, values)
        exp = cls(**parts)
        _check_method(exp, raw)
        return exp


def _type_name(t: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(t, "a list of integers")


def _table(table: str, config: type, values: dict[str, Any]) -> Any:
    known = {f.name: f for f in fields(config)}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise ExperimentError(f"[{table}] has no key {key!r}; keys: {', '.join(known)}")
        default = getattr(config(), key)
        kind = type(default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is list:
            if not (isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool)
                                                              and v >= 1 for v in value)):
                raise ExperimentError(f"[{table}] {key} must be a non-empty list of positive integers, got {value!r}")
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ExperimentError(f"[{table}] {key} must be {_type_name(kind)}, got {value!r}")
        choices = _CHOICES.get((table, key))
        if choices is not None and value not in choices:
            raise ExperimentError(f"[{table}] {key} = {value!r} is not accepted; choose one of: {', '.join(choices)}")
        if (table, key) in _POSITIVE and value <= 0:
            raise ExperimentError(f"[{table}] {key} must be > 0, got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise ExperimentError(f"[{table}] {key} must be >= 0, got {value!r}")
        out[key] = value
    if table == "data" and "test_fraction" in out and not 0 < out["test_fraction"] < 1:
        raise ExperimentError(f"[data] test_fraction must lie in (0, 1), got {out['test_fraction']!r}")
    if table == "select" and out.get("n_candidates", 2) < 2:
        raise ExperimentError("[select] n_candidates must be at least 2")
    return config(**out)


def _check_method(exp: Experiment, raw: dict[str, Any]) -> None:
    """The cross-table rules of the module docstring's method table."""
    prior, fit = exp.prior, exp.fit
    given = raw.get("prior", {})
    for key, kind in KIND_KEYS.items():
        if key in given and getattr(prior, key) != getattr(PriorConfig(), key) and prior.kind != kind:
            raise ExperimentError(
                f"[prior] {key} = {given[key]!r} is only used by kind = {kind!r}, not {prior.kind!r}; "
                f"remove it or set kind = {kind!r}"
            )
    if prior.kind == "sparse_group" and not 0.0 <= prior.alpha <= 1.0:
        raise ExperimentError(
            f"[prior] alpha must lie in [0, 1] (the L1 share: 0 is the group lasso, 1 is L1), got {prior.alpha!r}"
        )
    if exp.select.evidence in ("elbo", "iwae") and fit.method == "map":
        raise ExperimentError(
            f'[select] evidence = "{exp.select.evidence}" needs a variational posterior, but [fit] method = "map" '
            f'fits a point estimate: use evidence = "laplace", or method = "svi" (not available for kind = "l0" '
            f'or guidance = "relevance")'
        )
    if prior.kind == "l0":
        if fit.method != "map":
            raise ExperimentError(
                '[prior] kind = "l0" is trained by bg.fit_l0, a point estimate: set [fit] method = "map" '
                '(for a posterior over the weights use kind = "horseshoe" with method = "svi")'
            )
        if fit.schedule != "constant":
            raise ExperimentError('[prior] kind = "l0" (bg.fit_l0) has no learning-rate schedule: '
                                  'set [fit] schedule = "constant"')
    if prior.kind == "horseshoe":
        if fit.method != "svi":
            raise ExperimentError(
                '[prior] kind = "horseshoe" has no MAP (its density is unbounded at zero weights): '
                'set [fit] method = "svi"'
            )
        if prior.guidance in ("partial", "relevance"):
            raise ExperimentError(
                f'[prior] kind = "horseshoe" needs positive guidance coefficients (they divide the local '
                f'scales), not guidance = {prior.guidance!r}; use linear, geometric or uniform'
            )
    if prior.guidance == "relevance":
        if prior.kind != "l2":
            raise ExperimentError(
                f'[prior] guidance = "relevance" re-estimates the precisions of a Gaussian prior: set '
                f'kind = "l2", not {prior.kind!r}'
            )
        if fit.method != "map":
            raise ExperimentError('[prior] guidance = "relevance" is trained by bg.fit_relevance (MAP): '
                                  'set [fit] method = "map"')
        if fit.batch_size != 0:
            raise ExperimentError('[prior] guidance = "relevance" (bg.fit_relevance) trains on the full batch: '
                                  'set [fit] batch_size = 0')
        if fit.schedule != "constant":
            raise ExperimentError('[prior] guidance = "relevance" (bg.fit_relevance) has no learning-rate '
                                  'schedule: set [fit] schedule = "constant"')
        source = exp.data.source
        if source.endswith((".npz", ".csv")):
            check_relevance_task(exp, exp.data.task)
        elif source == "teacher":  # the built-ins know their own task; the runner checks again
            check_relevance_task(exp, "regression")


def check_relevance_task(exp: Experiment, task: str) -> None:
    """``guidance = "relevance"`` needs a fixed noise, which experiment files cannot set: classification only."""
    if exp.prior.guidance == "relevance" and task == "regression":
        raise ExperimentError(
            '[prior] guidance = "relevance" needs a classification task: a regression model learns its '
            'noise σ, which bg.fit_relevance cannot (use the Python API with a fixed noise)'
        )


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
    ...     _ = f.write('[prior]\\nkind = "l1"\\nstrength = 0.3\\n')
    >>> load_experiment(f.name).prior
    PriorConfig(kind='l1', strength=0.3, guidance='linear', alpha=0.5, tau0=0.1, l0_weight_decay=0.0)
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
