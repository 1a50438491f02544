"""Running an experiment end to end into a run directory, incrementally and resumably.

``run_experiment(exp)``: data → network → guided prior → fit (``bg.fit_map``,
``bg.fit_svi``, ``bg.fit_l0`` or ``bg.fit_relevance``, picked by the experiment's
``[prior]`` and ``[fit]``, see :mod:`bayesguide.experiment`) → pruning path → for each
candidate (fine-tune, evidence, metrics; saved as soon as it is done) → Occam prior and
posterior probabilities → optional PSIS-LOO → recommended architecture with measured
latency → ``results.json`` and the reports. ``results.json`` is rewritten atomically
after every step; a crash or Ctrl-C keeps every finished candidate, and running the
same experiment into the same directory again resumes where it stopped (a different
experiment in that directory is refused, so nothing is overwritten by mistake).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import bayesguide as bg
from bayesguide.architecture import load_module, save_module
from bayesguide.comparison import assemble, resolve_hessian, score_candidate
from bayesguide.experiment import KIND_KEYS, Experiment, check_relevance_task
from bayesguide.infer.guides import DeltaGuide, make_guide
from bayesguide.infer.result import FitResult, data_fingerprint
from bayesguide.priors import UnitPrior
from bayesguide.pruning.path import fine_tune_fit, tuning_model
from bayesguide.relevance import relevance
from bayesguide.results import SCHEMA_VERSION, downsample, load_results, write_json_atomic

__all__ = ["RunDirectoryError", "run_experiment"]

_ACT: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU,
}


class RunDirectoryError(ValueError):
    """The output directory holds another experiment's results."""


def _config_hash(exp: Experiment) -> str:
    cfg = exp.to_dict()
    cfg.pop("output")
    for key, kind in KIND_KEYS.items():  # a kind's own keys only: older run directories keep their hash
        if cfg["prior"]["kind"] != kind:
            cfg["prior"].pop(key)
    return hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def _network(exp: Experiment, n_in: int, n_out: int) -> nn.Sequential:
    torch.manual_seed(exp.fit.seed)
    layers: list[nn.Module] = []
    width = n_in
    for h in exp.network.hidden:
        layers += [nn.Linear(width, h), _ACT[exp.network.activation]()]
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def _prior(exp: Experiment) -> UnitPrior:
    """The ``[prior]`` table as a unit prior (combinations already validated by the experiment)."""
    p = exp.prior
    guidance = relevance() if p.guidance == "relevance" else bg.guidance.get(p.guidance)
    if p.kind == "l0":
        return bg.HardConcreteGates(p.strength, guidance, weight_decay=p.l0_weight_decay)
    if p.kind == "horseshoe":
        return bg.GroupHorseshoe(p.strength, guidance, tau0=p.tau0)
    if p.kind == "sparse_group":
        return bg.make_prior(p.kind, p.strength, guidance, alpha=p.alpha)
    return bg.make_prior(p.kind, p.strength, guidance)


def _fit(exp: Experiment, model: bg.GuidedModel, X: torch.Tensor, y: torch.Tensor, progress: bool) -> FitResult:
    """The fit the experiment asks for: fit_relevance, fit_l0, fit_map or fit_svi."""
    f = exp.fit
    if exp.prior.guidance == "relevance":
        return bg.fit_relevance(model, X, y, steps=f.steps, lr=f.lr, seed=f.seed)
    common: dict[str, Any] = {"steps": f.steps, "lr": f.lr, "seed": f.seed,
                              "batch_size": f.batch_size or None, "progress": progress}
    if exp.prior.kind == "l0":
        return bg.fit_l0(model, X, y, **common)
    if f.method == "map":
        return bg.fit_map(model, X, y, schedule=f.schedule, **common)
    return bg.fit_svi(model, X, y, guide=f.guide, schedule=f.schedule, **common)


def _fit_name(exp: Experiment) -> str:
    if exp.prior.guidance == "relevance":
        return "fit_relevance"
    if exp.prior.kind == "l0":
        return "fit_l0"
    return f"fit_{exp.fit.method}"


def _latency_ms(module: nn.Module, n_features: int, repeats: int = 30) -> float:
    """Median wall time of one forward pass on a batch of 256 (CPU, no grad)."""
    x = torch.randn(256, n_features, dtype=next(module.parameters()).dtype)
    module = module.eval()
    times = []
    with torch.no_grad():
        for _ in range(5):
            module(x)
        for _ in range(repeats):
            start = time.perf_counter()
            module(x)
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _fit_summary(fit: FitResult) -> dict[str, Any]:
    losses, loss_steps = downsample(fit.losses, np.arange(fit.steps))
    return {
        "method": fit.method, "steps": fit.steps, "wall_time_s": fit.wall_time, "stop_reason": fit.stop_reason,
        "final_loss": fit.final_loss, "losses": losses, "loss_steps": loss_steps,
        "unit_norms": {k: v.tolist() for k, v in fit.unit_norms.items()},
        "norm_steps": fit.norm_steps.tolist(), "prior": str(fit.model.prior),
    }


def _restore_fit(exp: Experiment, model: bg.GuidedModel, saved: dict[str, Any], out: Path,
                 X: torch.Tensor, y: torch.Tensor) -> FitResult:
    """Rebuild the finished fit from the run directory (weights, histories, estimated guidance)."""
    for name, g in saved.get("coefficients", {}).items():  # bg.fit_relevance's last estimate
        model.coefficients[name].copy_(torch.as_tensor(g, dtype=model.coefficients[name].dtype))
    module = load_module(out / "fit").train()
    if saved["method"] == "map":
        guide: Any = DeltaGuide(model, module)
    else:
        guide = make_guide(exp.fit.guide, model, module)
        guide.load_state_dict(torch.load(out / "fit" / "guide.pt", weights_only=True))
    module.eval()
    return FitResult(
        method=saved["method"], model=model, module=module, guide=guide,
        losses=np.asarray(saved["losses"]), unit_norms={k: np.asarray(v) for k, v in saved["unit_norms"].items()},
        norm_steps=np.asarray(saved["norm_steps"]), wall_time=saved["wall_time_s"],
        stop_reason=saved["stop_reason"], settings={}, n_data=X.shape[0],
        data_fingerprint=data_fingerprint(X, y), optimizer_state={},
    )


def run_experiment(exp: Experiment, *, progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``exp`` into ``exp.output.dir`` and return the final results (see :mod:`bayesguide.results`)."""
    start = time.perf_counter()
    out = Path(exp.output.dir)
    chash = _config_hash(exp)
    previous: dict[str, Any] | None = None
    if (out / "results.json").exists():
        previous = load_results(out)
        if previous.get("config_hash") != chash:
            raise RunDirectoryError(
                f"{out} holds the results of a different experiment; choose another [output] dir or remove it"
            )
        log(f"resuming the run in {out} ({previous['status']})")
    out.mkdir(parents=True, exist_ok=True)

    data = bg.datasets.load(exp.data.source, exp.data.task if exp.data.source.endswith((".npz", ".csv")) else None,
                            exp.data.target or None, exp.data.test_fraction, exp.data.seed)
    log(f"data   {data}")
    likelihood = "categorical" if data.task == "classification" else "gaussian"
    net = _network(exp, data.n_features, data.n_outputs)
    check_relevance_task(exp, data.task)
    model = bg.GuidedModel(net, _prior(exp), likelihood=likelihood)
    X, y = model.prepare_data(data.X_train, data.y_train)
    test = model.prepare_data(data.X_test, data.y_test)
    metric = "accuracy" if likelihood == "categorical" else "rmse"
    results: dict[str, Any] = previous or {
        "schema_version": SCHEMA_VERSION, "status": "running", "config": exp.to_dict(), "config_hash": chash,
        "data": {"name": data.name, "task": data.task, "n_train": int(X.shape[0]), "n_test": int(test[0].shape[0]),
                 "n_features": data.n_features, "n_outputs": data.n_outputs},
        "fit": None, "metric": metric, "candidates": [], "best": None, "recommended": None, "flags": [],
        "timings": {},
    }

    def save() -> None:
        results["timings"]["total_s"] = results["timings"].get("previous_s", 0.0) + time.perf_counter() - start
        write_json_atomic(out / "results.json", results)

    # ---- fit
    if results["fit"] is None:
        log(f"model  {model}")
        fit = _fit(exp, model, X, y, progress)
        save_module(fit.module, out / "fit")
        if fit.method == "svi":
            torch.save(fit.guide.state_dict(), out / "fit" / "guide.pt")
        summary = _fit_summary(fit)
        if exp.prior.guidance == "relevance":
            summary["coefficients"] = {k: v.tolist() for k, v in fit.model.coefficients.items()}
        summary["train_metric"] = _metric(fit.module, X, y, metric)
        summary["test_metric"] = _metric(fit.module, *test, metric)
        results["fit"] = summary
        save()
        log(f"fit    {_fit_name(exp)}: {fit.steps} steps in {fit.wall_time:.1f} s; "
            f"test {metric} {summary['test_metric']:.4f}")
    else:
        fit = _restore_fit(exp, model, results["fit"], out, X, y)

    # ---- candidates, each saved when done
    path = bg.pruning_path(fit, X, y, n_candidates=exp.select.n_candidates,
                           threshold=exp.select.threshold or None)
    hessian = resolve_hessian(exp.select.hessian, path)
    done = {c["name"]: c for c in results["candidates"]}
    candidates = []
    for i, cand in enumerate(path):
        cdir = out / "candidates" / cand.name
        if cand.name in done:
            if exp.select.fine_tune:
                tuned_module = load_module(cdir)
                tuned = dataclasses.replace(
                    _tuned_placeholder(cand, X, y), module=tuned_module,
                    guide=DeltaGuide(tuning_model(cand), tuned_module))
                cand = dataclasses.replace(cand, tuned=tuned)
            candidates.append(cand)
            continue
        log(f"candidate {i + 1}/{len(path)}: {cand.name} ({cand.n_params:,} parameters)")
        failure = None
        if exp.select.fine_tune:
            try:
                tuned = fine_tune_fit(cand, X, y, steps=exp.select.fine_tune, lr=exp.fit.lr, seed=exp.fit.seed)
                cand = dataclasses.replace(cand, tuned=tuned)
            except (ValueError, RuntimeError, FloatingPointError) as err:  # one candidate never stops the run
                failure = f"failed: fine-tuning: {err}"
        row = score_candidate(cand, X, y, test, evidence=exp.select.evidence, hessian=hessian,
                              optimize_prior=exp.select.optimize_prior)
        if failure is not None:
            row["status"], row["log_evidence"] = failure, float("nan")
        save_module(cand.tuned.module if cand.tuned is not None else cand.module, cdir)
        row["kept"] = {k: list(v) for k, v in cand.kept.items()}
        results["candidates"].append(row)
        candidates.append(cand)
        save()

    # ---- posterior over architectures, diagnostics, recommendation
    by_name = {c["name"]: c for c in results["candidates"]}
    rows = [dict(by_name[c.name]) for c in candidates]
    cmp = assemble(rows, candidates, occam=exp.select.occam, kappa=exp.select.kappa, loo=exp.select.loo,
                   X=X, y=y, settings={"evidence": exp.select.evidence, "hessian": hessian})
    results["candidates"] = [_row(r, by_name[r["name"]]) for r in cmp.table.to_dict("records")]
    results["flags"] = list(cmp.flags)
    results["best"] = None if cmp.best is None else cmp.best.name
    if cmp.best is not None:
        best = cmp.best
        module = best.tuned.module if best.tuned is not None else best.module
        results["recommended"] = {
            "name": best.name, "widths": list(best.widths), "n_params": best.n_params, "flops": best.flops,
            "n_params_full": best.original_params, "flops_full": best.original_flops,
            "latency_ms": _latency_ms(module, data.n_features),
            "latency_full_ms": _latency_ms(fit.module, data.n_features),
        }
        rec = results["recommended"]
        rec["speedup"] = rec["latency_full_ms"] / rec["latency_ms"]
        prob = float(cmp.table.loc[cmp.table["name"] == best.name, "posterior_prob"].iloc[0])
        log(f"best   {best.name}: {best.n_params:,} of {best.original_params:,} parameters, "
            f"posterior probability {prob:.3f}")
    if cmp.best is not None and fit.method == "svi":
        # the best candidate's approximate posterior (the sliced SVI guide) for ArviZ
        from bayesguide.predictive import to_inference_data

        to_inference_data(cmp.best, X, y, posterior="guide", draws=200, seed=exp.fit.seed).to_netcdf(
            str(out / "posterior.nc"))
        results["posterior_file"] = "posterior.nc"
    results["status"] = "complete"
    save()
    _write_reports(results, out, log)
    return results


def _tuned_placeholder(cand: Any, X: torch.Tensor, y: torch.Tensor) -> FitResult:
    """A FitResult shell for a candidate whose re-fitted weights are loaded from disk."""
    module = cand.module
    return FitResult(method="map", model=cand.model, module=module, guide=DeltaGuide(tuning_model(cand), module),
                     losses=np.zeros(0), unit_norms={}, norm_steps=np.zeros(0, dtype=np.int64), wall_time=0.0,
                     stop_reason="loaded", settings={}, n_data=int(X.shape[0]),
                     data_fingerprint=data_fingerprint(X, y), optimizer_state={})


def _row(table_row: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
    row = {k: v for k, v in table_row.items() if k not in ("train_metric", "test_metric")}
    row["metrics"] = {"train": table_row.get("train_metric"), "test": table_row.get("test_metric")}
    row["kept"] = saved.get("kept", {})
    return row


def _metric(module: nn.Module, X: torch.Tensor, y: torch.Tensor, metric: str) -> float:
    with torch.no_grad():
        out = module.eval()(X)
    if metric == "accuracy":
        return float((out.argmax(1) == y).double().mean())
    return float((out - y).pow(2).mean().sqrt())


def _write_reports(results: dict[str, Any], out: Path, log: Callable[[str], None]) -> None:
    try:
        from bayesguide.report import write_report
    except ImportError:  # pragma: no cover - the report package ships with bayesguide
        log("report package not available; results.json written")
        return
    for name in ("report.html", "report.md"):
        write_report(results, out / name)
    log(f"wrote {out / 'report.html'} and {out / 'report.md'}")
