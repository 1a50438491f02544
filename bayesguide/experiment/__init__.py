"""Experiment files: one TOML file describes a whole run (``bayesguide run FILE``).

Every key has a default, so an empty file is the built-in demo. Tables and keys::

    [data]
    source = "digits"          # digits | mnist1d | teacher | path/to/file.npz | path/to/file.csv
                               #   (a relative path is read from the experiment file's folder)
    task = "classification"    # classification | regression (built-ins know their own)
    target = ""                # the target column of a .csv file
    test_fraction = 0.25       # held out when the source has no test split
    seed = 0

    [network]
    hidden = [128, 128]        # widths of the hidden Linear layers
    activation = "relu"        # relu | tanh | sigmoid | gelu | silu | elu

    [prior]
    kind = "l2"                # l1 | l2 | group | sparse_group | l0 | horseshoe
    strength = 1.0             # λ, the prior's rate (summed-NLL convention); l0: cost of an open gate
    guidance = "auto"          # auto | linear | geometric | uniform | partial | relevance | marglik
                               #   (auto: marglik for kind = "l2" with method = "map", else linear)
    alpha = 0.5                # sparse_group only: the L1 share of the penalty (0: group lasso, 1: L1)
    tau0 = 0.1                 # horseshoe only: scale of the global half-Cauchy
    l0_weight_decay = 0.0      # l0 only: L2 penalty w ‖θ‖² on every weight and bias

    [fit]
    method = "map"             # map | svi
    steps = "auto"             # "auto": 6000 for guidance = "marglik", else 1500; or a number
    lr = 0.003
    seed = 0
    batch_size = 0             # 0: full batch
    schedule = "constant"      # constant | cosine | anneal
    guide = "normal"           # svi: normal | lowrank
    warm_start = "auto"        # svi: MAP steps the posterior starts from ("auto": steps // 4 for the horseshoe, else 0)
    device = ""                # "" (the CPU) | cpu | cuda | cuda:N: where the fit, fine-tuning and evidence run

    [select]
    evidence = "laplace"       # laplace | elbo | iwae | clml (elbo, iwae: svi fits only)
    occam = "guidance"         # guidance | params | flops | uniform
    kappa = "auto"             # "auto" (the prior spans 1 nat over the candidates) or κ >= 0
    n_candidates = 8           # points of the pruning path
    threshold = 0.001          # also the candidate without units scoring below this (0: none)
    bisect = 2                 # rounds adding path points next to the best candidate (0: none)
    fine_tune = 3000           # at most this many MAP steps re-fitting each candidate, checked for convergence
    patience = 200             # ... stopping once a re-fit gains < 0.5 nats in this many steps (0: never)
    hessian = "auto"           # auto | full | kron | ekfac | diag
    optimize_prior = true      # type-II ML of each candidate's prior scale
    loo = false                # PSIS-LOO columns (slower)

    [output]
    dir = "bayesguide-run"

An unknown table or key, or a value of the wrong type or outside its choices, is an
error naming the table, the key and the accepted values — raised before any work.
Every number must be finite (TOML's ``nan`` and ``inf`` are refused) and sizes are
bounded: a hidden width at most 1,000,000 and at most 1,000 hidden layers; ``steps``,
``fine_tune``, ``patience`` and ``batch_size`` at most 1,000,000,000; ``n_candidates`` at most the
number of distinct points a pruning path of ``[network] hidden`` can have, the sum of
the hidden widths + 1. ``[output] dir`` must name a directory (not ``""``).
``[fit] device`` must be ``""``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` and available on
the machine that loads the file (``"cuda"`` without CUDA is refused then, not when the
run gets there); it sets ``device=`` of the fit, of the candidates' fine-tuning and of
their evidence ([`bayesguide.model.device`][]: data moved per batch, results on the
CPU), and is left out of ``Experiment.to_dict()`` when ``""``, so it does not change
the identity of existing runs. The
choices come from the registries — prior families (``kind`` and their own keys),
fitters, evidence estimators, Occam priors — so a registered family or estimator is an
experiment-file choice without any change here.

**Methods.** ``[prior] kind`` and ``guidance`` pick the method and the fit. Without a
``[prior]`` table a run is **evidence-driven** (``kind = "l2"``, ``guidance = "auto"``,
which is ``"marglik"`` for a MAP fit, with ``steps = "auto"``: 6,000): the prior
precision of every unit is learned from the Laplace evidence, so no strength has to be
tuned, and on the teacher–student benchmark it finds the teacher's width far more often
than the guided group lasso (docs/benchmarks.md). Naming another ``kind`` without a
``guidance`` gives it the linear profile (``"auto"`` is ``"linear"`` for every kind but
``"l2"``, and for SVI fits); ``guidance = "linear"`` with ``kind = "l2"`` is guided L2.

* ``kind = "l1" | "l2" | "group" | "sparse_group"``: ``bg.fit_map`` or ``bg.fit_svi``
  (``[fit] method``); any guidance except ``relevance`` and ``marglik``.
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
* ``guidance = "marglik"`` (evidence-driven: per-unit prior precisions learned from
  the Laplace evidence every 100 steps after 100, the linear profile as hyperprior):
  ``bg.fit_marglik`` — needs ``kind = "l2"``, ``[fit] method = "map"`` and
  ``schedule = "constant"``; regression (it learns σ) or classification. Its pruning
  path starts at the units the evidence left alive.

These rules are not written here: each prior family declares which fitter trains it for
each ``[fit] method`` and each fitter what it needs ([`bayesguide.priors.registry`][],
[`bayesguide.infer.registry`][]); a combination outside them is an error naming the
keys and what to use instead. A family's own keys (``alpha``, ``tau0``,
``l0_weight_decay``) may be omitted or left at their defaults for any kind; set to
another value for a kind that does not use them they are an error, not silently ignored.
How candidates are re-fitted and scored: [`bayesguide.pipeline`][].
"""

from __future__ import annotations

from bayesguide.experiment.keys import keys_help
from bayesguide.experiment.rules import Experiment, check_task, load_experiment, resolve_source
from bayesguide.experiment.tables import (
    ACTIVATIONS,
    DataConfig,
    ExperimentError,
    FitConfig,
    NetworkConfig,
    OutputConfig,
    PriorConfig,
    SelectConfig,
)

__all__ = [
    "ACTIVATIONS",
    "DataConfig",
    "Experiment",
    "ExperimentError",
    "FitConfig",
    "NetworkConfig",
    "OutputConfig",
    "PriorConfig",
    "SelectConfig",
    "check_task",
    "keys_help",
    "load_experiment",
    "resolve_source",
]
