"""Evidence-driven selection: bayesguide's ``fit_marglik`` against laplace-torch's ``marglik_training``.

Both sides learn prior precisions from the Laplace evidence while training the full
student (Immer, Bauer, Fortuin, Rätsch & Khan, ICML 2021), then one and the same
selection picks a width from each trained network:

* **bayesguide** — what ``bayesguide run`` does with its defaults (``[prior] kind =
  "l2"``, ``guidance = "auto"``, i.e. ``"marglik"``; ``[fit] steps = "auto"``, i.e.
  6,000, ``lr = 0.003``; a regression learns its noise): ``bg.fit_marglik`` (per-unit
  ARD precisions, MacKay's fixed point every 100 steps after 100), then
  ``bg.select_architecture`` with the run's ``Selection``.
* **laplace-torch** — ``laplace.marglik_training`` on an identical copy of the initial
  network (the same ``NetworkConfig.build`` seed): ``prior_structure = "diag"`` (one
  precision per parameter: the closest to per-unit ARD), the same Adam learning rate,
  a full-batch loader so that one epoch is one step and ``n_epochs`` = the same step
  count, hyperparameter updates every 100 epochs after 100 (``marglik_frequency``,
  ``n_epochs_burnin``; each is laplace-torch's 10 Adam steps on the log precisions and,
  for a regression, the log noise), the precisions starting at the mean of bayesguide's
  starting ones. ``prior_structure = "diag"`` needs a ``"diag"`` or ``"full"`` Laplace
  in laplace-torch 0.3 (KFAC takes only scalar or per-layer precisions): ``"full"`` for
  the small teacher–student nets, ``"diag"`` for digits (26,122 parameters); the GGN
  from BackPACK. ``--peer-priors diag layerwise`` adds ``prior_structure =
  "layerwise"`` with a KFAC Laplace, as in Immer et al.

**The same path for the peer.** Its trained network is wrapped in a
``bg.GuidedModel`` under ``bg.GuidedNormal(λ, uniform guidance)`` whose per-unit
coefficients are the peer's learned precisions: ``g_j = ᾱ_j / (2 λ)``, ``ᾱ_j`` the mean
of laplace-torch's per-parameter precisions over unit ``j``'s weight group (its
incoming row and bias; for the output layer, each output unit's row). This is exactly
how a ``fit_marglik`` fit carries its learned precisions (``g_j = α_j / (2 λ)``), so the
re-fits' prior and the architecture prior (``occam = "guidance"``) treat both fits
alike. A ``FitResult`` is made from it by ``bg.fit_map(..., steps=1, lr=1e-12)`` (one
Adam step that moves no weight by more than ~1e-12: ``fit_map`` refuses ``steps=0``),
and its noise (regression) is set to the peer's learned ``σ``. The selection is the
run's ``Selection`` with ``start = "threshold"`` — what ``start = "auto"`` resolves to
for a ``fit_marglik`` fit (a ``fit_map`` fit would start from the full network) — so
both paths are cut by the same rule: units of norm ``≤ 1e-3`` first, then the unit-norm
order, each candidate re-fitted to its own mode, scored by its Laplace evidence and the
architecture prior, bisected near the best.

What the peer's precisions do as a prior: laplace-torch's gradient steps on the log
precisions can run ahead of the weights (precisions of 10³–10⁵ on units of norm ≈ 1
on the 24-unit tanh student); re-fitting a candidate under them then shrinks it
towards the constant predictor, and the pick is scored on such re-fits. The JSON keeps
each side's ``full_test_metric`` (the trained full network) next to the pick's
``test_metric`` so that this shows; ``best_epoch`` is the update whose network
``marglik_training`` returned (it stops early on the evidence).

Timings: the fit (``fit_marglik`` / ``marglik_training``) and the selection of each
side, wall (``time.perf_counter``) and CPU (``time.process_time``) seconds, in one
process, the two sides alternating case by case. Run under ``OMP_NUM_THREADS=1`` to
compare single-thread costs.

Cases: the teacher–student regressions of ``benchmarks/teacher_student.py`` (its
``teacher_data``: tanh and relu teachers of width 2, 5 and 8, ``d = 4``, ``N = 300``,
noise 0.2, seed 0; student 3× wider, ``n_candidates = min(8, 3w + 1)``) and the
built-in digits (MLP 64-128-128-10, the run's defaults).

laplace-torch is not a dependency of bayesguide: without it the script says so and
exits 0.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/marglik_peer.py                      # all cases
    OMP_NUM_THREADS=1 python benchmarks/marglik_peer.py --cases tanh-w2 digits
    OMP_NUM_THREADS=1 python benchmarks/marglik_peer.py --smoke --out /tmp/m.json   # seconds (tests)

The JSON (default ``benchmarks/results/marglik_peer.json``) is rewritten atomically after
every case.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import bayesguide as bg
from bayesguide.atomic import write_json_atomic
from bayesguide.datasets import load
from bayesguide.experiment import Experiment
from bayesguide.pipeline import fit_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from teacher_student import teacher_data

TEACHERS: list[dict[str, Any]] = [
    {"name": f"{a}-w{w}", "activation": a, "width": w, "d": 4, "n": 300, "noise": 0.2, "seed": 0}
    for a in ("tanh", "relu") for w in (2, 5, 8)
]
DIGITS: dict[str, Any] = {"name": "digits", "width": None}
CASES = [*TEACHERS, DIGITS]
SMOKE = {"fit": {"steps": 200}, "select": {"fine_tune": 50, "n_candidates": 4, "bisect": 1}}
"""Experiment keys the smoke run overrides (a 2-unit tanh teacher)."""
N_HYPERSTEPS = 10
"""laplace-torch's default number of Adam steps on the hyperparameters per evidence update."""
TINY_LR = 1e-12
"""The learning rate of the one ``fit_map`` step that turns the peer's network into a FitResult."""
PEER_HESSIAN = {"diag": {"teacher": "full", "digits": "diag"}, "layerwise": {"teacher": "kron", "digits": "kron"}}
"""laplace-torch's Laplace structure for each ``prior_structure``, by task."""


def _peer() -> tuple[Callable[..., Any], type] | None:
    """laplace-torch's ``marglik_training`` and its BackPACK GGN backend, or ``None`` (said) when unusable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its dependencies warn on import (torch.jit)
            from laplace.curvature import BackPackGGN
            from laplace.marglik_training import marglik_training
    except Exception as err:  # ImportError, or a binary-incompatible dependency
        print(f"laplace-torch is not usable here ({type(err).__name__}: {err}); "
              f"install it with `pip install -c constraints.txt laplace-torch backpack-for-pytorch` to compare")
        return None
    return marglik_training, BackPackGGN


def experiment(case: dict[str, Any], workdir: Path, overrides: dict[str, dict[str, Any]]) -> Experiment:
    """The experiment file ``bayesguide run`` would get for ``case`` (its defaults, as the teacher benchmark)."""
    if case["width"] is None:
        raw: dict[str, Any] = {"data": {"source": "digits"}, "output": {"dir": str(workdir / "digits")}}
    else:
        data = workdir / f"{case['name']}.npz"
        arrays = teacher_data(case["activation"], case["width"], case["d"], case["n"], case["noise"], case["seed"])
        np.savez(data, X=arrays["X"], y=arrays["y"], X_test=arrays["X_test"], y_test=arrays["y_test"])
        raw = {"data": {"source": str(data), "task": "regression"},
               "network": {"hidden": [3 * case["width"]], "activation": case["activation"]},
               "select": {"n_candidates": min(8, 3 * case["width"] + 1)},
               "output": {"dir": str(workdir / case["name"])}}
    for table, values in overrides.items():
        raw.setdefault(table, {}).update(values)
    return Experiment.from_dict(raw)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def unit_precisions(model: bg.GuidedModel, precision: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per site, the mean of laplace-torch's per-parameter ``precision`` over each unit's incoming row and bias.

    ``precision`` is in ``parameters_to_vector(net.parameters())`` order (a scalar or one
    value per layer is expanded first, as laplace-torch does).
    """
    params = list(model.net.parameters())
    n = sum(p.numel() for p in params)
    prec = precision.detach().double().flatten()
    if prec.numel() == 1:
        prec = prec.expand(n)
    elif prec.numel() == len(params):
        prec = torch.cat([v.expand(p.numel()) for v, p in zip(prec, params, strict=True)])
    if prec.numel() != n:
        raise ValueError(f"precision has {precision.numel()} entries; the network has {n} parameters")
    chunks, at = {}, 0
    for name, p in model.net.named_parameters():
        chunks[name] = prec[at:at + p.numel()].reshape(p.shape)
        at += p.numel()
    out = {}
    for site in model.sites:
        layer = site.layer.name
        weight = chunks[f"{layer}.weight"].reshape(site.n_units, -1)
        parts = [weight] + ([chunks[f"{layer}.bias"].reshape(-1, 1)] if f"{layer}.bias" in chunks else [])
        out[site.name] = torch.cat(parts, dim=1).mean(dim=1)
    return out


def peer_fit(net: nn.Module, likelihood: str, precision: torch.Tensor, sigma: float | None,
             X: torch.Tensor, y: torch.Tensor, strength: float) -> bg.FitResult:
    """The peer's trained ``net`` as a bayesguide FitResult (see the module docstring)."""
    base = bg.GuidedModel(net, bg.GuidedNormal(strength, bg.guidance.uniform()), likelihood)
    alphas = unit_precisions(base, precision)
    model = base.with_coefficients({name: a / (2 * strength) for name, a in alphas.items()})
    fit = bg.fit_map(model, X, y, steps=1, lr=TINY_LR, progress=False)
    if sigma is not None:
        with torch.no_grad():  # the peer's learned noise, σ = softplus(u)
            s = torch.as_tensor(sigma, dtype=torch.float64)
            fit.guide.noise_unconstrained.copy_(s + torch.log(-torch.expm1(-s)))
    return fit


def _record(cmp: Any) -> dict[str, Any]:
    best = cmp.best
    table = cmp.table
    row = table[table["name"] == best.name].iloc[0] if best is not None and "name" in table else None
    return {
        "picked": None if best is None else [int(w) for w in best.widths],
        "path": [[int(w) for w in c.widths] for c in cmp.candidates],
        "posterior": None if row is None else float(row["posterior_prob"]),
        "test_metric": None if row is None or "test_metric" not in row else float(row["test_metric"]),
        "flags": list(cmp.flags),
    }


def run_case(case: dict[str, Any], peer: tuple[Callable[..., Any], type], workdir: Path,
             overrides: dict[str, dict[str, Any]], peer_priors: Sequence[str],
             bayesguide_first: bool = True) -> dict[str, Any]:
    """Both sides on one case: the picks, the paths and the times (``peer``: see `_peer`).

    ``bayesguide_first``: the order of the two sides (`main` alternates it case by case).
    """
    marglik_training, backend = peer
    exp = experiment(case, workdir, overrides)
    data = load(exp.data.source, exp.data.task, None, exp.data.test_fraction, exp.data.seed)
    likelihood = "categorical" if data.task == "classification" else "gaussian"
    net = exp.network.build(data.n_features, data.n_outputs, exp.fit.seed)
    initial = copy.deepcopy(net)  # the peer starts from the same weights
    model = bg.GuidedModel(net, exp.prior.build(), likelihood=likelihood)
    X, y = model.prepare_data(data.X_train, data.y_train)
    X_test, y_test = model.prepare_data(data.X_test, data.y_test)
    settings = exp.prior.build().guidance
    if not isinstance(settings, bg.guidance.MarginalLikelihood):
        raise ValueError(f"the run's default prior should be evidence-driven, got guidance {settings!r}")
    every, burn_in = int(settings.every), int(settings.burn_in)
    strength = float(exp.prior.strength)
    alpha0 = float(torch.cat([2 * strength * g for g in model.coefficients.values()]).mean())
    steps = int(exp.optim(False).steps)
    sel = exp.selection(False)
    record: dict[str, Any] = {
        "case": case["name"], "true_width": case["width"], "n_train": int(X.shape[0]), "steps": steps,
        "lr": exp.fit.lr, "every": every, "burn_in": burn_in, "peer_prior_prec_init": alpha0,
        "n_params": sum(p.numel() for p in net.parameters()),
    }

    def test_metric(module: nn.Module) -> float:
        """The full network's test accuracy (classification) or RMSE (regression)."""
        with torch.no_grad():
            out = module.eval()(X_test)
        if likelihood == "categorical":
            return float((out.argmax(-1) == y_test).double().mean())
        return float((out.reshape(y_test.shape) - y_test).square().mean().sqrt())

    def ours() -> None:
        fit, wall, cpu = _timed(lambda: fit_model(model, X, y, exp.optim(False), method=exp.fit.method,
                                                  **exp.fitter_options()))
        cmp, swall, scpu = _timed(lambda: bg.select_architecture(fit, X, y, sel, X_test=X_test, y_test=y_test))
        record["bayesguide"] = {"fitter": fit.fitter, "fit_wall": wall, "fit_cpu": cpu, "select_wall": swall,
                                "select_cpu": scpu, "full_test_metric": test_metric(fit.module), **_record(cmp)}

    task = "digits" if case["width"] is None else "teacher"
    peer_task = "classification" if likelihood == "categorical" else "regression"
    yp = y if likelihood == "categorical" else y.reshape(len(y), -1)
    loader = DataLoader(TensorDataset(X, yp), batch_size=len(X), shuffle=False)  # one step per epoch

    n_hyper = N_HYPERSTEPS

    def theirs(structure: str) -> None:
        peer_net = copy.deepcopy(initial)
        torch.manual_seed(exp.fit.seed)
        hessian = PEER_HESSIAN[structure][task]

        def train() -> Any:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return marglik_training(
                    peer_net, loader, peer_task, hessian, backend, optimizer_kwargs={"lr": exp.fit.lr},
                    n_epochs=steps, prior_structure=structure, n_epochs_burnin=burn_in, marglik_frequency=every,
                    n_hypersteps=n_hyper, prior_prec_init=alpha0)

        (la, trained, margliks, _), wall, cpu = _timed(train)
        sigma = None if likelihood == "categorical" else float(la.sigma_noise)
        clean = copy.deepcopy(initial)  # the trained weights without BackPACK's hooks (they slow every re-fit)
        clean.load_state_dict(trained.state_dict())
        pfit = peer_fit(clean, likelihood, la.prior_precision, sigma, X, y, strength)
        # marglik_training returns the network of its best update (early stopping on the evidence)
        finals = margliks[n_hyper - 1::n_hyper]
        first = every * max(1, -(-burn_in // every))  # the first epoch with an update
        best_epoch = first + every * int(np.argmin(finals)) if finals else None
        psel = dataclasses.replace(sel, start="threshold")
        pcmp, swall, scpu = _timed(lambda: bg.select_architecture(pfit, X, y, psel, X_test=X_test, y_test=y_test))
        record[f"peer_{structure}"] = {
            "prior_structure": structure, "hessian": hessian, "backend": backend.__name__, "fit_wall": wall,
            "fit_cpu": cpu, "select_wall": swall, "select_cpu": scpu, "sigma": sigma,
            "neg_log_marglik_last": float(margliks[-1]) if margliks else None, "best_epoch": best_epoch,
            "full_test_metric": test_metric(clean), **_record(pcmp),
        }

    runs: list[Callable[[], None]] = [ours, *[functools.partial(theirs, s) for s in peer_priors]]
    for run in runs if bayesguide_first else runs[::-1]:
        run()
    record["order"] = ["bayesguide", *[f"peer_{s}" for s in peer_priors]][::1 if bayesguide_first else -1]
    return record


def table(records: list[dict[str, Any]], peer_priors: Sequence[str]) -> str:
    """The printed table: picks, fit and selection seconds, and the fit-time ratios."""
    lines = []
    for structure in peer_priors:
        key = f"peer_{structure}"
        lines.append(f"peer: marglik_training, prior_structure={structure!r}")
        lines.append(f"{'case':9s} {'true':>4s} {'bg pick':>9s} {'peer pick':>9s} {'bg fit s':>9s} "
                     f"{'peer fit s':>10s} {'bg sel s':>9s} {'peer sel s':>10s} {'fit ratio wall':>14s} "
                     f"{'fit ratio cpu':>13s}")
        for r in records:
            if key not in r:
                continue
            b, p = r["bayesguide"], r[key]
            lines.append(
                f"{r['case']:9s} {r['true_width'] or '-'!s:>4s} {_w(b['picked']):>9s} {_w(p['picked']):>9s} "
                f"{b['fit_wall']:9.1f} {p['fit_wall']:10.1f} {b['select_wall']:9.1f} {p['select_wall']:10.1f} "
                f"{b['fit_wall'] / p['fit_wall']:14.2f} {b['fit_cpu'] / p['fit_cpu']:13.2f}")
    lines.append("fit ratio = bayesguide fit_marglik / laplace-torch marglik_training (< 1: bayesguide faster)")
    return "\n".join(lines)


def _w(widths: list[int] | None) -> str:
    return "-" if widths is None else "-".join(map(str, widths))


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [c["name"] for c in CASES]
    parser.add_argument("--cases", nargs="+", default=names, choices=names, metavar="CASE",
                        help=f"which cases (default all: {' '.join(names)})")
    parser.add_argument("--peer-priors", nargs="+", default=["diag"], choices=sorted(PEER_HESSIAN),
                        help="laplace-torch prior_structure(s) (default: diag)")
    parser.add_argument("--smoke", action="store_true", help="one tiny case (tanh-w2, 200 steps): seconds")
    parser.add_argument("--steps", type=int, default=None,
                        help="fit steps of both sides (default: bayesguide run's, 6,000)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/marglik_peer.json"))
    args = parser.parse_args(argv)
    peer = _peer()
    if peer is None:
        return []
    cases = [TEACHERS[0]] if args.smoke else [c for c in CASES if c["name"] in args.cases]
    overrides: dict[str, dict[str, Any]] = copy.deepcopy(SMOKE) if args.smoke else {}
    if args.steps is not None:
        overrides.setdefault("fit", {})["steps"] = args.steps
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(cases):
            record = run_case(case, peer, Path(tmp), overrides, args.peer_priors, bayesguide_first=i % 2 == 0)
            records.append(record)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(args.out, {"torch_threads": torch.get_num_threads(), "smoke": args.smoke,
                                         "records": records})
            b = record["bayesguide"]
            peers = "; ".join(f"{s}: {_w(record[f'peer_{s}']['picked'])} (fit {record[f'peer_{s}']['fit_wall']:.1f} s)"
                              for s in args.peer_priors)
            print(f"{case['name']}: bayesguide {_w(b['picked'])} (fit {b['fit_wall']:.1f} s, select "
                  f"{b['select_wall']:.1f} s); laplace-torch {peers}", flush=True)
    print(table(records, args.peer_priors))
    return records


if __name__ == "__main__":
    main()
