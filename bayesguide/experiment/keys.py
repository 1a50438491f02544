"""The experiment file's keys in words: every table, key, default and accepted values.

`keys_help` is what ``bayesguide run --help`` prints. It is built from the tables'
dataclasses (the keys and their defaults), `choices` (the accepted values, read from
the registries) and the prior families' own keys, so a new key or a registered family
appears without a change here; only the one-line notes in `NOTES` are written by hand
(a key without a note is listed with its default alone).
"""

from __future__ import annotations

import textwrap
from dataclasses import fields
from typing import Any

from bayesguide.experiment.tables import TABLES, PriorConfig, choices
from bayesguide.priors import families

__all__ = ["NOTES", "keys_help"]

NOTES: dict[tuple[str, str], str] = {
    ("data", "source"): "a built-in name, or a .npz (X, y, optional X_test, y_test) / .csv file; "
                        "a relative path is read from the experiment file's folder",
    ("data", "task"): "for .npz / .csv sources (float targets need \"regression\"); built-ins know their own",
    ("data", "target"): "the target column of a .csv file",
    ("data", "test_fraction"): "held out when the source has no test split",
    ("data", "seed"): "the seed of that split",
    ("network", "hidden"): "widths of the hidden Linear layers",
    ("network", "activation"): "",
    ("prior", "kind"): "the unit prior (see the methods below)",
    ("prior", "strength"): "λ, the prior's rate (summed-NLL convention); l0: the cost of an open gate",
    ("prior", "guidance"): "the guidance profile; auto: marglik (evidence-driven) for kind = \"l2\" with "
                           "method = \"map\", else linear",
    ("fit", "method"): "map: a point estimate; svi: an approximate posterior",
    ("fit", "steps"): "\"auto\" (6000 for guidance = \"marglik\", else 1500) or a number",
    ("fit", "lr"): "the learning rate",
    ("fit", "seed"): "initialisation and minibatches",
    ("fit", "batch_size"): "0: full batch",
    ("fit", "schedule"): "the learning-rate schedule",
    ("fit", "guide"): "svi only: the variational family",
    ("fit", "warm_start"): "svi only: the first this many of steps are MAP steps the posterior starts from; "
                           "\"auto\": steps // 4 for kind = \"horseshoe\", else 0",
    ("fit", "device"): "\"\" (the CPU) | cpu | cuda | cuda:N",
    ("select", "evidence"): "the evidence estimator (elbo, iwae: svi fits only)",
    ("select", "occam"): "the prior over architectures",
    ("select", "kappa"): "\"auto\" (the prior spans 1 nat over the candidates) or a number >= 0",
    ("select", "n_candidates"): "points of the pruning path",
    ("select", "threshold"): "also the candidate without units scoring below this (0: none)",
    ("select", "bisect"): "rounds adding path points next to the best candidate (0: none)",
    ("select", "fine_tune"): "at most this many MAP steps re-fitting each candidate, checked for convergence "
                             "(0: none)",
    ("select", "patience"): "stop a re-fit once its objective has not improved by 0.5 nats in this many "
                            "steps (0: run all fine_tune steps)",
    ("select", "round_to"): "keep a multiple of this many units (channels) per layer, e.g. 8: more "
                            "speed per FLOP on CPU kernels, a coarser path (0: any count)",
    ("select", "merge"): "fold units whose incoming weights lie within this relative distance of a multiple "
                         "of another's into it (twins; MAP fits), e.g. 0.1 (0: no merging)",
    ("select", "hessian"): "the curvature of the Laplace evidence",
    ("select", "optimize_prior"): "type-II maximum likelihood of each candidate's prior scale",
    ("select", "loo"): "PSIS-LOO columns (slower)",
    ("output", "dir"): "the run directory (relative: to the working directory); --out overrides it",
}
"""A short note per key, shown after its default and accepted values."""


def _toml(value: Any) -> str:
    """A default as it is written in TOML."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value) if isinstance(value, float) else str(value)


_WIDTH, _COLUMN = 100, 33
"""The help's width, and the column where the notes start."""


def _line(key: str, default: Any, accepted: tuple[str, ...] | None, note: str) -> str:
    text = f"    {key} = {_toml(default)}"
    words = "; ".join(([" | ".join(accepted)] if accepted else []) + ([note] if note else []))
    if not words:
        return text
    pad = " " * _COLUMN
    notes = textwrap.fill(words, _WIDTH, initial_indent=pad, subsequent_indent=pad, break_on_hyphens=False)
    return (f"{text:<{_COLUMN}}" if len(text) < _COLUMN else f"{text}\n{pad}") + notes[_COLUMN:]


def keys_help() -> str:
    """Every table and key of an experiment file, with its default and accepted values.

    Returns
    -------
    str
        The text, one line per key, tables in file order; the ``[prior]`` table ends
        with each registered family's own keys.

    Examples
    --------
    >>> text = keys_help()
    >>> '[fit]' in text and 'steps = "auto"' in text
    True
    """
    accepted = choices()
    lines = ["experiment file keys (every key is optional; shown with its default):"]
    for table, config in TABLES.items():
        lines.append(f"  [{table}]")
        default = config()
        for f in fields(config):
            if config is PriorConfig and f.name == "options":
                continue
            lines.append(_line(f.name, getattr(default, f.name), accepted.get((table, f.name)),
                               NOTES.get((table, f.name), "")))
        if config is PriorConfig:
            for family in families():
                for option in family.options:
                    lines.append(_line(option.key, option.default, None,
                                       f"kind = \"{family.kind}\" only: {option.summary}"))
    return "\n".join(lines) + "\n"
