"""An experiment: the validated tables, the rules across them, and loading a file.

[`Experiment`][bayesguide.experiment.rules.Experiment] holds the six tables ([`bayesguide.experiment.tables`][]) and
turns
them into what a run needs — the prior, the fitter and its settings, the selection of
the pipeline. The rules that involve several tables (which fitter trains the prior for
``[fit] method``, what that fitter allows, which evidence a point estimate can have,
what the data's task allows) are read from the prior family and the fitter registry.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bayesguide.experiment.tables import (
    TABLES,
    DataConfig,
    ExperimentError,
    FitConfig,
    NetworkConfig,
    OutputConfig,
    PriorConfig,
    SelectConfig,
    parse_prior_table,
    parse_table,
    resolve_guidance,
    resolve_steps,
    resolve_warm_start,
)
from bayesguide.guidance import ProfileName, adaptive_fitter
from bayesguide.guidance import get as get_guidance
from bayesguide.infer import Fitter, OptimSettings, fitter_for, get_fitter
from bayesguide.marglik import get_estimator
from bayesguide.pipeline import Selection
from bayesguide.priors import get_family

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Experiment", "check_method", "check_sizes", "check_task", "load_experiment", "resolve_source"]


@dataclass(frozen=True)
class Experiment:
    """A validated experiment; ``to_dict()`` gives every key with its value.

    ``[fit] device`` is listed by ``to_dict()`` only when set: where a run computes is not
    what it computes, so an experiment that leaves it at ``""`` keeps the identity (the
    runner's configuration hash) it had before the key existed; likewise ``[select]
    round_to`` at its default 0 (no rounding), ``[select] merge = 0`` (no merging) and
    ``[fit] warm_start = 0`` (no MAP steps before SVI), added later.
    """

    data: DataConfig = field(default_factory=DataConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    prior: PriorConfig = field(default_factory=lambda: PriorConfig(options=get_family("l2").defaults()))
    fit: FitConfig = field(default_factory=FitConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        # "auto" never outlives construction: to_dict() (and so a run's identity) holds what ran
        if self.prior.guidance == "auto":
            object.__setattr__(self, "prior", replace(self.prior, guidance=resolve_guidance(self.prior.kind,
                                                                                          self.fit.method)))
        if self.fit.steps == "auto":
            object.__setattr__(self, "fit", replace(self.fit, steps=resolve_steps(self.prior.guidance)))
        if self.fit.warm_start == "auto":
            warm = resolve_warm_start(self.prior.kind, self.fit.method, int(self.fit.steps))
            object.__setattr__(self, "fit", replace(self.fit, warm_start=warm))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for table in TABLES:
            part = getattr(self, table)
            out[table] = part.to_dict() if isinstance(part, PriorConfig) else {
                f.name: getattr(part, f.name) for f in fields(part)}
        if not self.fit.device:
            out["fit"].pop("device")
        if not self.fit.warm_start:
            out["fit"].pop("warm_start")
        if not self.select.round_to:
            out["select"].pop("round_to")
        if not self.select.merge:
            out["select"].pop("merge")
        return out

    def fitter(self) -> Fitter:
        """The registered fitter the ``[prior]`` and ``[fit]`` tables pick."""
        return fitter_for(self.prior.build(), self.fit.method)

    def optim(self, progress: bool = True) -> OptimSettings:
        """The ``[fit]`` table as optimisation settings (the keys the fitter takes; ``device`` when set)."""
        fitter = self.fitter()
        f = self.fit
        options: dict[str, Any] = {"steps": int(f.steps), "lr": f.lr, "seed": f.seed, "progress": progress}
        if f.device:
            options["device"] = f.device
        if fitter.minibatch:
            options["batch_size"] = f.batch_size or None
        if fitter.schedules:
            options["schedule"] = f.schedule
        return OptimSettings(**options)

    def fitter_options(self) -> dict[str, Any]:
        """The ``[fit]`` keys that are the fitter's own keywords (e.g. ``guide`` for SVI)."""
        return {k: getattr(self.fit, k) for k in self.fitter().options}

    def selection(self, progress: bool = True) -> Selection:
        """The ``[select]`` table as a [`Selection`][bayesguide.pipeline.Selection] (with ``[fit] device``)."""
        s = self.select
        return Selection(
            n_candidates=s.n_candidates, threshold=s.threshold or None, bisect=s.bisect, fine_tune=s.fine_tune,
            round_to=s.round_to or None, merge=s.merge or None,
            fine_tune_patience=s.patience or None,
            fine_tune_lr=self.fit.lr, seed=self.fit.seed, evidence=s.evidence, hessian=s.hessian,
            optimize_prior=s.optimize_prior, occam=s.occam, kappa=s.kappa, loo=s.loo, progress=progress,
            device=self.fit.device or None,
        )

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Experiment:
        """Validate a parsed TOML document (see the module docstring for the tables)."""
        unknown = sorted(set(raw) - set(TABLES))
        if unknown:
            raise ExperimentError(f"unknown table [{unknown[0]}]; tables: {', '.join('[' + t + ']' for t in TABLES)}")
        parts: dict[str, Any] = {}
        for table, config in sorted(TABLES.items(), key=lambda item: item[0] == "prior"):  # [prior] reads [fit]
            values = raw.get(table, {})
            if not isinstance(values, dict):
                raise ExperimentError(f"[{table}] must be a table, got {type(values).__name__}")
            parts[table] = (parse_prior_table(values, parts["fit"].method) if table == "prior"
                            else parse_table(table, config, values))
        exp = cls(**parts)
        check_sizes(exp)
        check_method(exp)
        return exp



def check_sizes(exp: Experiment) -> None:
    """The cross-table bounds: a pruning path has at most sum(hidden widths) + 1 distinct points."""
    most = sum(exp.network.hidden) + 1
    if exp.select.n_candidates > most:
        raise ExperimentError(
            f"[select] n_candidates = {exp.select.n_candidates:,} is more than a pruning path can hold: "
            f"[network] hidden = {exp.network.hidden} gives at most {most:,} distinct points "
            f"(the sum of the hidden widths + 1)"
        )


def _subject(exp: Experiment, adaptive: str | None) -> str:
    return f'[prior] guidance = "{exp.prior.guidance}"' if adaptive else f'[prior] kind = "{exp.prior.kind}"'


def check_method(exp: Experiment) -> None:
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
    if fit.warm_start and "warm_start" not in fitter.options:
        raise ExperimentError(f"[fit] warm_start = {fit.warm_start} is for SVI fits; {subject} is fitted by "
                              f"bg.fit_{fitter.name}: set warm_start = 0")
    if not 0 <= int(fit.warm_start) < int(fit.steps):
        raise ExperimentError(f"[fit] warm_start must lie in [0, steps) = [0, {fit.steps}): the MAP steps are part "
                              f"of the fit's steps; got {fit.warm_start}")
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


def resolve_source(tables: Mapping[str, Any], folder: Path | None) -> dict[str, Any]:
    """The tables with a relative ``[data] source`` file made absolute against ``folder``.

    An experiment (or sweep) file names its data relative to where the file is, not to
    where the command runs: ``source = "data.csv"`` beside ``exp.toml`` is read from
    there whatever the working directory. A leading ``~`` is the home folder. Built-in
    names, absolute paths and a missing ``folder`` leave the tables as they are.

    Parameters
    ----------
    tables
        The parsed document (``{"data": {...}, ...}``); not changed.
    folder
        The file's folder (``None``: the tables did not come from a file).

    Returns
    -------
    dict
        A shallow copy of ``tables``, its ``[data] source`` an absolute path where it was
        a relative ``.npz`` / ``.csv`` path.

    Examples
    --------
    >>> resolve_source({"data": {"source": "d.csv", "target": "y"}}, Path("/runs"))["data"]
    {'source': '/runs/d.csv', 'target': 'y'}
    >>> resolve_source({"data": {"source": "digits"}}, Path("/runs"))["data"]
    {'source': 'digits'}
    """
    out = dict(tables)
    data = out.get("data")
    source = data.get("source") if isinstance(data, Mapping) else None
    if folder is None or not isinstance(source, str) or not source.endswith((".npz", ".csv")):
        return out
    path = Path(source).expanduser()
    if path.is_absolute():
        if str(path) != source:  # "~/data.csv"
            out["data"] = {**data, "source": str(path)}  # type: ignore[dict-item]
        return out
    out["data"] = {**data, "source": str((folder / path).resolve())}  # type: ignore[dict-item]
    return out


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file.

    A relative ``[data] source`` path is read relative to the file's folder
    (`resolve_source`), so ``bayesguide run other/dir/exp.toml`` finds the data beside it.

    Parameters
    ----------
    path
        The TOML file.

    Returns
    -------
    Experiment
        The validated experiment.

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        If ``path`` is not a file.
    ExperimentError
        If the file is not UTF-8 TOML (or nested too deeply to parse), or any table, key
        or value is invalid; the message names the table and the key.

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
    if path.is_dir():
        raise IsADirectoryError(f"experiment file {path} is a directory, not a TOML file")
    if not path.is_file():
        raise FileNotFoundError(f"experiment file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ExperimentError(f"{path} is not valid TOML: not UTF-8 text (byte {err.start})") from None
    except tomllib.TOMLDecodeError as err:
        raise ExperimentError(f"{path} is not valid TOML: {err}") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise ExperimentError(f"{path} is not a usable experiment file: its arrays or tables are nested "
                              f"too deeply to read") from None
    return Experiment.from_dict(resolve_source(raw, path.parent.resolve()))
