"""Tables, figures and the Markdown page of ``benchmarks/compression.py``.

Everything here is computed from the stored fits (``runs.jsonl``); the verdicts in the
"claims" section are derived from the numbers by fixed rules stated next to them, and a
hand-written block between ``<!-- notes:start -->`` and ``<!-- notes:end -->`` in an
existing page is carried over unchanged.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bayesguide.atomic import write_atomic

NOTES = re.compile(r"<!-- notes:start -->.*?<!-- notes:end -->", re.S)
FAMILIES = (("l1", "L1"), ("l2", "L2"), ("group", "group lasso"))


def within(value: float, ref: float, task: Any) -> bool:
    if task.higher_is_better:
        return value >= ref - task.tolerance - 1e-12
    return value <= ref * (1.0 + task.tolerance) + 1e-12


def smallest_within(path: list[dict[str, Any]], ref: float, task: Any, which: str) -> dict[str, Any] | None:
    ok = [r for r in path if within(r[which], ref, task)]
    return min(ok, key=lambda r: (r["units"], r["params"])) if ok else None


def _mean(xs: Sequence[float | None]) -> float | None:
    v = [x for x in xs if x is not None and math.isfinite(x)]
    return statistics.fmean(v) if v else None


def _sd(xs: Sequence[float | None]) -> float | None:
    v = [x for x in xs if x is not None and math.isfinite(x)]
    return statistics.stdev(v) if len(v) > 1 else None


def _fmt(x: float | None, spec: str = ".1f", sd: float | None = None) -> str:
    if x is None:
        return "—"
    return f"{x:{spec}}" + ("" if sd is None else f" ± {sd:{spec}}")


def _pm(pair: Sequence[float | None], spec: str = ".1f") -> str:
    """``mean ± sd`` from a ``(mean, sd)`` pair."""
    return _fmt(pair[0], spec, pair[1])


def _scaled(pair: tuple[float | None, float | None], scale: float) -> list[float | None]:
    return [None if v is None else v * scale for v in pair]


def _metric_spec(task: Any) -> tuple[str, float]:
    """Format and scale of the task's metric: accuracy in %, RMSE as is."""
    return (".1f", 100.0) if task.higher_is_better else (".3f", 1.0)


def summarise(records: Mapping[str, dict[str, Any]], final_jobs: Sequence[Any], chosen: Mapping[tuple[str, str], float],
              refs_test: Mapping[tuple[str, int], float], tasks: Mapping[str, Any]) -> dict[str, Any]:
    """Per task and method: the per-seed numbers and their means."""
    out: dict[str, Any] = {}
    for job in final_jobs:
        task = tasks[job.task]
        rec = records.get(job.key)
        entry = out.setdefault(job.task, {}).setdefault(job.method, {"strength": chosen[(job.task, job.method)],
                                                                      "seeds": []})
        if rec is None or rec.get("status") != "ok":
            entry["seeds"].append({"seed": job.seed, "status": rec.get("status", "missing") if rec else "missing"})
            continue
        ref = refs_test.get((job.task, job.seed))
        path = rec["path"]
        small = smallest_within(path, ref, task, "test") if ref is not None else None
        best_test = (max if task.higher_is_better else min)(r["test"] for r in path)
        ev = rec.get("evidence", {})
        scored = [c for c in ev.get("candidates", []) if c.get("status") == "ok"]
        sel = next((c for c in scored if c["name"] == ev.get("selected")), None)
        best_scored = (max if task.higher_is_better else min)((c["test"] for c in scored), default=None)
        lat = rec.get("latency")
        entry["seeds"].append({
            "seed": job.seed, "status": "ok", "ref_test": ref, "dense_test": path[0]["test"],
            "full_units": path[0]["units"], "full_params": path[0]["params"], "full_flops": path[0]["flops"],
            "small": small, "best_test": best_test, "fit_s": rec["fit_s"], "ms_per_step": rec["ms_per_step"],
            "evidence_selected": sel, "evidence_error": ev.get("error"),
            "evidence_best": best_scored,
            "evidence_gap": None if sel is None or best_scored is None else abs(best_scored - sel["test"]),
            "speedup": None if not lat else lat["full_ms"] / lat["small_ms"],
            "curve": [(r["units"], r["test"]) for r in path],
            "certainty": _certainty(ev, sel),
        })
    return out


PRIOR_FLAGS = ("the architecture prior overturns", "the pick depends on the prior's strength")
SENSITIVITY_RANGE = 3.0  # bayesguide.comparison.sensitivity.DEFAULT_RANGE: κ up to 3 × κ_auto is checked


def _certainty(ev: Mapping[str, Any], sel: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """How sure the comparison was of its pick and whether the prior decided it (records with a κ interval)."""
    if sel is None or "kappa_interval" not in ev or sel.get("evidence_prob") is None:
        return None
    kappa = float(ev["kappa"] or 0.0)
    lo, hi = ev["kappa_interval"] if ev["kappa_interval"] else (None, None)
    stands = lo is not None and lo <= 1e-12 and (hi is None or hi >= SENSITIVITY_RANGE * kappa)
    flags = ev.get("flags", [])
    return {"posterior": sel["posterior"], "evidence_prob": sel["evidence_prob"], "stands": stands,
            "prior_flags": sum(1 for f in flags if f.startswith(PRIOR_FLAGS)),
            "unconverged": sel.get("converged") is False}


def _agg(seeds: list[dict[str, Any]], f: Any) -> tuple[float | None, float | None]:
    vals = [f(s) for s in seeds if s.get("status") == "ok"]
    return _mean(vals), _sd(vals)


def task_table(task: Any, methods: Mapping[str, Any], summary: Mapping[str, Any]) -> list[str]:
    spec, scale = _metric_spec(task)
    unit = "acc. %" if task.higher_is_better else "RMSE"
    lines = [
        f"| method | strength | dense test {unit} | smallest within tol.: units | params | FLOPs | test {unit} "
        f"| speed-up | evidence pick: units | its test {unit} | gap to best scored | fit s | ms/step |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in methods.items():
        if name not in summary:
            continue
        e = summary[name]
        seeds = e["seeds"]
        ok = [s for s in seeds if s.get("status") == "ok"]
        failed = len(seeds) - len(ok)

        def small(key: str, s: dict[str, Any]) -> float | None:
            return None if s["small"] is None else float(s["small"][key])

        def picked(key: str, s: dict[str, Any]) -> float | None:
            return None if s["evidence_selected"] is None else float(s["evidence_selected"][key])

        n_none = sum(1 for s in ok if s["small"] is None)
        units = _pm(_agg(ok, lambda s: small("units", s)), ".0f") + (f" ({n_none}× none)" if n_none else "")
        row = [
            m.title + (f" ({failed} failed)" if failed else ""),
            f"{e['strength']:g}",
            _pm(_scaled(_agg(ok, lambda s: s["dense_test"]), scale), spec),
            units,
            _fmt(_agg(ok, lambda s: small("params", s))[0], ",.0f"),
            _fmt(_agg(ok, lambda s: small("flops", s))[0], ",.0f"),
            _pm(_scaled(_agg(ok, lambda s: small("test", s)), scale), spec),
            _fmt(_agg(ok, lambda s: s["speedup"])[0], ".1f") + "×",
            _pm(_agg(ok, lambda s: picked("units", s)), ".0f"),
            _pm(_scaled(_agg(ok, lambda s: picked("test", s)), scale), spec),
            _pm(_scaled(_agg(ok, lambda s: s["evidence_gap"]), scale), spec),
            _fmt(_agg(ok, lambda s: s["fit_s"])[0], ".1f"),
            _fmt(_agg(ok, lambda s: s["ms_per_step"])[0], ".2f"),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def claims(tasks: Mapping[str, Any], methods: Mapping[str, Any], summary: Mapping[str, Any]) -> list[str]:
    """Verdicts by fixed rules (stated in the text) from the per-seed numbers."""
    lines = ["### Guided against uniform (traditional) regularizers", "",
             "Rule: mean over seeds of the hidden units of the smallest architecture within tolerance of the "
             "reference; a seed where no candidate is within tolerance counts as the full width. "
             "\"fewer\" needs a difference of more than one unit.", "",
             "| task | family | guided units | uniform units | verdict |", "|---|---|---|---|---|"]
    for t, task in tasks.items():
        s = summary.get(t, {})
        for fam, title in FAMILIES:
            g, u = s.get(f"guided-{fam}"), s.get(f"uniform-{fam}")
            if g is None or u is None:
                continue
            gu, uu = _units_or_full(g), _units_or_full(u)
            if gu is None or uu is None:
                verdict = "no data"
            elif gu < uu - 1:
                verdict = "guided keeps fewer"
            elif uu < gu - 1:
                verdict = "**uniform keeps fewer**"
            else:
                verdict = "tie"
            lines.append(f"| {task.title} | {title} | {_fmt(gu, '.0f')} | {_fmt(uu, '.0f')} | {verdict} |")
    lines += ["", "### Partial against full regularization (cost per step and size)", "",
              "Milliseconds per step measured inside this benchmark's fits (two fits run side by side, one "
              "thread each, so these are indicative; `benchmarks/partial_cost.py` times the steps alone).", "",
              "| task | uniform group ms/step | partial group ms/step | ratio | uniform group units | "
              "partial group units | partial SGL units |", "|---|---|---|---|---|---|---|"]
    for t, task in tasks.items():
        s = summary.get(t, {})
        u, p, q = s.get("uniform-group"), s.get("partial-group"), s.get("partial-sgl")
        if u is None or p is None:
            continue
        mu, mp = _agg(u["seeds"], lambda x: x["ms_per_step"])[0], _agg(p["seeds"], lambda x: x["ms_per_step"])[0]
        ratio = None if mu is None or mp is None else mp / mu
        lines.append(f"| {task.title} | {_fmt(mu, '.2f')} | {_fmt(mp, '.2f')} | {_fmt(ratio, '.2f')} | "
                     f"{_fmt(_units_or_full(u), '.0f')} | {_fmt(_units_or_full(p), '.0f')} | "
                     f"{_fmt(_units_or_full(q) if q else None, '.0f')} |")
    lines += ["", "### Is the evidence-selected architecture within tolerance of the best on its path?", "",
              "Rule: per fit, |best test metric among the scored (re-fitted) candidates of the path − test metric "
              "of the evidence's pick| ≤ the task's tolerance. Counted over seeds.", "",
              "| method | " + " | ".join(t.title.split(",")[0] + " (" + n + ")" for n, t in tasks.items()) + " |",
              "|---|" + "---|" * len(tasks)]
    for name, m in methods.items():
        if getattr(m, "peer", False):  # a peer has no Bayesian model, so no evidence pick
            continue
        cells = []
        for t, task in tasks.items():
            e = summary.get(t, {}).get(name)
            if e is None:
                cells.append("—")
                continue
            ok = [x for x in e["seeds"] if x.get("status") == "ok"]
            scored = [x for x in ok if x["evidence_gap"] is not None]
            hits = sum(1 for x in scored if _gap_ok(x["evidence_gap"], x["evidence_best"], task))
            err = sum(1 for x in ok if x["evidence_gap"] is None)
            cells.append(f"{hits}/{len(scored)}" + (f" ({err} not scored)" if err else ""))
        lines.append(f"| {m.title} | " + " | ".join(cells) + " |")
    lines += ["", *certainty(tasks, methods, summary), "", *fewest_units(tasks, methods, summary)]
    return lines


def certainty(tasks: Mapping[str, Any], methods: Mapping[str, Any], summary: Mapping[str, Any]) -> list[str]:
    """Per task and method: the pick's posterior and evidence-only probabilities, its κ range, the prior's flags."""
    lines = ["### How sure is the evidence pick, and does the architecture prior decide it?", "",
             "Per fit, from the comparison behind the pick: P — the pick's posterior probability at the κ used "
             "(\"auto\"); ev — the same candidate's probability under a uniform prior over the candidates (the "
             "evidence alone); \"stands\" — fits whose pick is the same for every κ from 0 to 3× the κ used "
             "(the default range `bg.compare` checks); \"flagged\" — fits where the comparison flagged that the "
             "prior overturns the evidence or that the pick changes within that range; \"unconverged\" — fits "
             "whose pick's re-fit was still improving. P and ev are medians over seeds. \"—\": fits stored before "
             "these numbers were recorded.", "",
             "| method | " + " | ".join(t.title.split(",")[0] + " (" + n + ")" for n, t in tasks.items()) + " |",
             "|---|" + "---|" * len(tasks)]
    for name, m in methods.items():
        if getattr(m, "peer", False):
            continue
        cells = []
        for t in tasks:
            e = summary.get(t, {}).get(name)
            rows = [x["certainty"] for x in (e["seeds"] if e else []) if x.get("certainty")]
            if not rows:
                cells.append("—")
                continue
            p = statistics.median(float(r["posterior"]) for r in rows)
            ev = statistics.median(float(r["evidence_prob"]) for r in rows)
            cell = (f"P {p:.2f} · ev {ev:.2f} · stands {sum(r['stands'] for r in rows)}/{len(rows)} · "
                    f"flagged {sum(r['prior_flags'] > 0 for r in rows)}")
            unconverged = sum(r["unconverged"] for r in rows)
            cells.append(cell + (f" · unconverged {unconverged}" if unconverged else ""))
        lines.append(f"| {m.title} | " + " | ".join(cells) + " |")
    return lines


def fewest_units(tasks: Mapping[str, Any], methods: Mapping[str, Any], summary: Mapping[str, Any]) -> list[str]:
    """Per task: the method keeping the fewest units within tolerance, bayesguide's best against each peer."""
    lines = ["### Who keeps the fewest units at equal accuracy (peers included)", "",
             "Rule: as above, mean over seeds of the hidden units of the smallest architecture within tolerance "
             "of the reference (a seed with none counts as the full width); \"fewer\" needs a difference of "
             "more than one unit. The peer's row is the best bayesguide method (fewest units) against the peer.",
             "", "| task | fewest units: method | units | best bayesguide method | units | peer | units | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for t, task in tasks.items():
        s = summary.get(t, {})
        units: dict[str, float] = {}
        for n in methods:
            u = _units_or_full(s[n]) if n in s else None
            if u is not None:
                units[n] = u
        if not units:
            continue
        peers: list[str | None] = [n for n in units if getattr(methods[n], "peer", False)]
        ours = {n: u for n, u in units.items() if n not in peers}
        best = min(units, key=units.__getitem__)
        own = min(ours, key=ours.__getitem__) if ours else None
        for peer in peers or [None]:
            cells = [task.title, methods[best].title, _fmt(units[best], ".0f")]
            cells += [methods[own].title, _fmt(ours[own], ".0f")] if own else ["—", "—"]
            if peer is None or own is None:
                cells += ["—", "—", "no peer" if peer is None else "no data"]
            else:
                pu, ou = units[peer], ours[own]
                verdict = ("bayesguide keeps fewer" if ou < pu - 1 else "**the peer keeps fewer**" if pu < ou - 1
                           else "tie")
                cells += [methods[peer].title, _fmt(pu, ".0f"), verdict]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _gap_ok(gap: float, best: float, task: Any) -> bool:
    return gap <= task.tolerance + 1e-12 if task.higher_is_better else gap <= best * task.tolerance + 1e-12


def _units_or_full(entry: dict[str, Any]) -> float | None:
    ok = [s for s in entry["seeds"] if s.get("status") == "ok"]
    if not ok:
        return None
    return statistics.fmean(s["small"]["units"] if s["small"] else s["full_units"] for s in ok)


def figure(task: Any, methods: Mapping[str, Any], summary: Mapping[str, Any], refs: list[float], path: Path) -> None:
    """Test metric against units kept, mean over seeds, one panel per method group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[str]] = {}
    for name, m in methods.items():
        if name in summary:
            groups.setdefault(m.group, []).append(name)
    if "guided-group" in summary:
        groups.setdefault("baselines", []).insert(0, "guided-group")
        if "peers" in groups:  # the peer beside bayesguide's guided group lasso
            groups["peers"].insert(0, "guided-group")
    _, scale = _metric_spec(task)
    fig, axes = plt.subplots(1, len(groups), figsize=(6.2 * len(groups), 4.2), squeeze=False, sharey=True)
    for ax, (group, names) in zip(axes[0], groups.items(), strict=True):
        for name in names:
            curves = [s["curve"] for s in summary[name]["seeds"] if s.get("status") == "ok"]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            units = [statistics.fmean(c[i][0] for c in curves) for i in range(n)]
            vals = [scale * statistics.fmean(c[i][1] for c in curves) for i in range(n)]
            ax.plot(units, vals, marker="o", ms=3, label=methods[name].title)
        if refs:
            ref = statistics.fmean(refs) * scale
            tol = task.tolerance * (100 if task.higher_is_better else ref)
            bound = ref - tol if task.higher_is_better else ref + tol
            ax.axhline(ref, color="k", lw=0.8, label="dense reference")
            ax.axhline(bound, color="k", lw=0.8, ls="--", label="tolerance")
        ax.set_xscale("log")
        ax.set_xlabel("hidden units kept (log scale)")
        ax.set_title(group)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("test accuracy (%)" if task.higher_is_better else "test RMSE")
    if task.higher_is_better and refs:
        lo = statistics.fmean(refs) * 100 - 25
        axes[0][0].set_ylim(bottom=max(lo, 0))
    elif refs:
        axes[0][0].set_ylim(top=statistics.fmean(refs) * 4)
    fig.suptitle(task.title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(records: Mapping[str, dict[str, Any]], final_jobs: Sequence[Any], ref_jobs: Sequence[Any],
                  tune_jobs: Mapping[tuple[str, str], Sequence[Any]], chosen: Mapping[tuple[str, str], float],
                  refs_val: Mapping[tuple[str, int], float], refs_test: Mapping[tuple[str, int], float],
                  meta: dict[str, Any], out: Path, page: Path, tasks_all: Mapping[str, Any],
                  methods_all: Mapping[str, Any]) -> None:
    tasks = {t: tasks_all[t] for t in meta["tasks"]}
    methods = {m: methods_all[m] for m in meta["methods"]}
    summary = summarise(records, final_jobs, chosen, refs_test, tasks)
    failures = [r for r in records.values() if r.get("status") != "ok"]
    tuning = {f"{t}|{m}": [{"strength": j.strength, "status": records.get(j.key, {}).get("status", "missing")}
                           for j in js] for (t, m), js in tune_jobs.items()}
    write_atomic(out / "summary.json", json.dumps({"meta": meta, "summary": summary, "tuning": tuning,
                                                    "references": {f"{t}|{s}": v for (t, s), v in refs_test.items()}},
                                                   indent=1, default=str))
    img_dir = page.parent / "img" / "benchmarks"
    lines = [
        "# Benchmarks: who compresses best",
        "",
        "Generated by `benchmarks/compression.py` from its stored fits (`runs.jsonl`); do not edit the tables "
        "by hand — rerun the script (`--report-only` rebuilds this page without fitting).",
        "",
        f"- **Command:** `{meta['command'].strip()}`",
        f"- **Machine:** {meta['machine']}; {meta['workers']} worker process(es), one thread each",
        f"- **Wall time of the run:** {meta['elapsed_s'] / 60:.1f} min" + (" (smoke mode)" if meta["smoke"] else ""),
        f"- **Fits:** {sum(1 for r in records.values() if r.get('status') == 'ok')} finished, "
        f"{len(failures)} failed",
        "",
        "## Protocol",
        "",
        "Every method is a prior in bayesguide and is fitted with the same budget: the same Adam steps "
        "on the same batches, learning rate and schedule (see the table) and seeds. 20 % of each "
        "training set is a fixed validation split used to tune each method's strength on seed 0 (grid below); "
        "the test set is used for nothing but the reported numbers. Each fit's pruning path (`bg.pruning_path`, "
        "geometric spacing, the method's own unit score) is read at the final step, without fine-tuning. "
        "\"Within tolerance\" means within 1 accuracy point of the dense reference (the same network with a weak "
        "uniform L2 prior, same budget and seed) — for the regression task, an RMSE at most 5 % above the "
        "reference's. The evidence pick is `bg.compare` over every third point of the same path and its "
        "smallest network, each first re-fitted to its own MAP from its pruned weights by the task's \"evidence "
        "re-fit\" (MAP steps at a constant learning rate unless the table says \"cosine\", on the task's batches; "
        "the Laplace evidence expands "
        "around a mode; `bayesguide run` does the same with `fine_tune`), with "
        "Laplace evidence, type-II ML prior "
        "scale and the guidance Occam prior at `bayesguide run`'s default strength (κ = \"auto\": a prior range of "
        "1 nat over the candidates); priors without a proper Gaussian counterpart are scored under "
        "a uniform Gaussian. Latency: batch of 256, one thread, median of 30 alternated forward passes of the "
        "dense and the smallest-within-tolerance network, with subnormal numbers flushed to zero (sparsity "
        "regularisers leave many dense weights subnormal, whose slow arithmetic would otherwise pass for a "
        "pruning speed-up). Numbers are mean ± standard deviation over seeds. "
        "Peers (marked \"(peer)\") are trained and pruned by their own library on the same batches, steps, "
        "learning rate, schedule, initialisation and seeds, with their strength tuned by the same rule; "
        "Torch-Pruning trains with its `GroupNormPruner` regulariser (`reg` is the grid) and cuts, with its "
        "dependency graph, the units of lowest group-norm importance (ranked globally) at the same numbers of "
        "units as the geometric path; their parameters, FLOPs, accuracy and latency are measured by the same "
        "code as bayesguide's candidates. A peer has no model evidence, so its evidence columns show \"—\".",
        "",
        "| task | Adam steps | batch | lr | schedule | tolerance | grid × | evidence re-fit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in tasks.values():
        tol = f"{t.tolerance * 100:g} % of RMSE"
        if t.higher_is_better:
            tol = f"{t.tolerance * 100:g} point" + ("" if t.tolerance == 0.01 else "s")
        batch = "full" if t.batch_size is None else t.batch_size
        refit = getattr(t, "refit", None)
        refit_cell = "—" if refit is None else f"{refit[0]} steps at lr {refit[1]:g}"
        if refit is not None and getattr(t, "refit_schedule", "constant") != "constant":
            refit_cell += f", {t.refit_schedule}"
        lines.append(f"| {t.title} | {t.steps} | {batch} | {t.lr:g} | {t.schedule} | {tol} | {t.strength_scale:g} "
                     f"| {refit_cell} |")
    lines += ["", "Strength grids are in the mean-loss convention λ′ (the prior's rate is λ = N · λ′ · the task's "
              "\"grid ×\" factor, which for the regression task is 1/σ², the likelihood's curvature, and for "
              "MNIST-1D 0.3, because at its longer, faster budget the unscaled grids' weakest values already cost "
              "the dense network 2–5 validation points); the horseshoe's "
              "grid is its global scale τ₀, and its SVI starts from MAP steps under the Gaussian its Laplace "
              "evidence uses, taken from the same budget (`fit_svi(warm_start=...)`, \"fitted by\" below).", "",
              "| method | grid | fitted by | learning rate |", "|---|---|---|---|"]
    for m in methods.values():
        lr = "task's" if m.lr is None else f"{m.lr:g}"
        lines.append(f"| {m.title} | {', '.join(f'{v:g}' for v in m.grid)} | {m.fitter} | {lr} |")
    lines += ["", "## Results", ""]
    for t, task in tasks.items():
        refs = [refs_test[(t, s)] for (tt, s) in refs_test if tt == t]
        spec, scale = _metric_spec(task)
        ref_mean, ref_sd = _scaled((_mean(refs), _sd(refs)), scale)
        ref_txt = _fmt(ref_mean, spec, ref_sd)
        lines += [f"### {task.title}", "", f"Dense reference test {'accuracy (%)' if task.higher_is_better else 'RMSE'}"
                  f": {ref_txt}.", ""]
        lines += task_table(task, methods, summary.get(t, {}))
        img = img_dir / f"{t}.png"
        try:
            figure(task, methods, summary.get(t, {}), refs, img)
            lines += ["", f"![{task.title}: test metric against units kept]({os.path.relpath(img, page.parent)})"]
        except Exception as err:  # a figure never costs the tables
            lines += ["", f"(figure not drawn: {type(err).__name__}: {err})"]
        lines.append("")
    lines += ["## Claims, checked", "", *claims(tasks, methods, summary), ""]
    if failures:
        lines += ["## Failed fits", ""] + [f"- `{r['key']}`: {r['status']}" for r in failures] + [""]
    old = page.read_text() if page.exists() else ""
    kept = NOTES.search(old)
    lines += ["## What the numbers show", "",
              kept.group(0) if kept else "<!-- notes:start -->\n(no notes yet)\n<!-- notes:end -->", ""]
    write_atomic(page, "\n".join(lines))
