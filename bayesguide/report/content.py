"""What a report says, independent of its format.

The HTML and Markdown reports render the same content, built here from a results
dictionary (the schema of [`bayesguide.results`][]): key–value groups, tables of
formatted cells, the summary sentence and the flags. Everything returned is plain,
*unescaped* text; each renderer escapes it for its own format. Nothing here changes
the results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bayesguide.report._format import (
    MISSING,
    as_float,
    fmt_float,
    fmt_int,
    fmt_log,
    fmt_metric,
    fmt_percent,
    fmt_prob,
    fmt_seconds,
    fmt_value,
    fmt_widths,
    get,
)

__all__ = [
    "RUN_LATENCY_BATCH",
    "Results",
    "Table",
    "candidate_rows",
    "candidates_table",
    "flags",
    "for_experiment_file",
    "layer_label",
    "layer_labels",
    "loo_hint",
    "loo_table",
    "loss_caption",
    "loss_terms",
    "metric_label",
    "recommendation",
    "setup_groups",
    "summary",
    "title",
]

Results = Mapping[str, Any]
Items = list[tuple[str, str]]


@dataclass(frozen=True)
class Table:
    """A table of formatted cells.

    ``kinds`` holds one tag per row: ``"best"`` (the recommended candidate),
    ``"failed"`` (excluded from the comparison) or ``""``. ``numeric`` says which
    columns hold numbers (right-aligned).
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    kinds: tuple[str, ...]
    numeric: tuple[bool, ...]


def candidate_rows(results: Results) -> list[Mapping[str, Any]]:
    """The candidate entries that are mappings (anything else in the list is skipped)."""
    cands = results.get("candidates")
    if not isinstance(cands, Sequence) or isinstance(cands, str):
        return []
    return [c for c in cands if isinstance(c, Mapping)]


def metric_label(results: Results) -> str:
    """``"accuracy"``, ``"RMSE"`` or ``"metric"`` when the results do not say."""
    metric = results.get("metric")
    return {"accuracy": "accuracy", "rmse": "RMSE"}.get(str(metric), "metric")


def _best_name(results: Results) -> str | None:
    best = results.get("best")
    return None if best is None else str(best)


def _is_failed(cand: Mapping[str, Any]) -> bool:
    status = cand.get("status")
    return status is not None and str(status) != "ok"


def title(results: Results) -> str:
    """The page title, naming the data set when known."""
    name = get(results, "data", "name")
    return "bayesguide model comparison" + (f" — {name}" if name not in (None, "") else "")


def _recommended(results: Results) -> Mapping[str, Any] | None:
    """The ``recommended`` entry, or the best candidate's row when there is none."""
    rec = results.get("recommended")
    if isinstance(rec, Mapping):
        return rec
    best = _best_name(results)
    for cand in candidate_rows(results):
        if best is not None and str(cand.get("name")) == best:
            return cand
    return None


def _full_params(results: Results) -> float | None:
    full = as_float(get(results, "recommended", "n_params_full"))
    if full is None:
        sizes = [as_float(c.get("n_params")) for c in candidate_rows(results)]
        known = [s for s in sizes if s is not None]
        full = max(known) if known else None
    return full


def _probability_of(results: Results, name: str | None, key: str = "posterior_prob") -> Any:
    for cand in candidate_rows(results):
        if name is not None and str(cand.get("name")) == name:
            return cand.get(key)
    return None


def summary(results: Results) -> list[str]:
    """The summary box: the recommendation in one sentence, then the run in one line."""
    lines: list[str] = []
    rec = _recommended(results)
    if rec is None:
        lines.append("No architecture recommended: every candidate failed or none was compared.")
    else:
        name = str(rec.get("name", _best_name(results)))
        params = as_float(rec.get("n_params"))
        full = _full_params(results)
        size = f"{fmt_int(params)} parameters"
        if params is not None and full:
            size += f" ({fmt_percent(params / full)} of full)"
        prob = _probability_of(results, name)
        alone = _probability_of(results, name, "evidence_prob")
        said = f"Recommended: {name} — {size}, posterior probability {fmt_prob(prob)}"
        lines.append(said + ("" if alone is None else f" (evidence alone: {fmt_prob(alone)})"))
    cands = candidate_rows(results)
    failed = sum(_is_failed(c) for c in cands)
    run = f"{len(cands)} candidate{'s' if len(cands) != 1 else ''} compared"
    if failed:
        run += f", {failed} excluded"
    evidence = get(results, "config", "select", "evidence")
    occam = get(results, "config", "select", "occam")
    if evidence is not None:
        run += f"; evidence: {evidence}"
    if occam is not None:
        run += f"; architecture prior: {occam}"
    status = results.get("status")
    if status is not None and status != "complete":
        run += f"; run status: {status} (results incomplete)"
    lines.append(run)
    return lines


def for_experiment_file(results: Results) -> bool:
    """Whether the results come from an experiment file (``bayesguide run`` / ``demo``), not a notebook.

    A run directory's configuration holds the experiment's ``[output]`` table; the
    results of `bayesguide.compare` (``results_from_comparison``) have none. Hints
    then name experiment-file keys (``[select] loo = true``) instead of Python arguments.
    """
    return isinstance(get(results, "config", "output"), Mapping)


def loo_hint(results: Results) -> str:
    """How to add PSIS-LOO, in the words of whoever made the results."""
    if for_experiment_file(results):
        return "set loo = true in the experiment file's [select] table to add it"
    return "run the comparison with loo=True to add it"


def layer_labels(results: Results) -> dict[str, str]:
    """A reader's name for each prunable layer key (a module index such as ``"0"``, ``"2"``).

    The layers are counted as a reader counts them, in network order: ``"hidden layer 1"``,
    ``"hidden layer 2"``, … (the keys of ``fit.unit_norms``, else of the candidates'
    ``kept``). A key not among them keeps its own name, as ``"layer <key>"``.
    """
    keys: list[str] = []
    norms = get(results, "fit", "unit_norms")
    if isinstance(norms, Mapping) and norms:
        keys = [str(k) for k in norms]
    else:
        for cand in candidate_rows(results):
            kept = cand.get("kept")
            if isinstance(kept, Mapping) and kept:
                keys = [str(k) for k in kept]
                break
    return {key: f"hidden layer {i}" for i, key in enumerate(keys, start=1)}


def layer_label(results: Results, key: Any) -> str:
    """The reader's name of one layer key (see `layer_labels`)."""
    return layer_labels(results).get(str(key), f"layer {key}")


def loss_terms(results: Results) -> tuple[list[Any], list[Any]] | None:
    """The fit's data term and penalty histories, or ``None`` when the results lack them.

    Older ``results.json`` files (and non-MAP fits) record only the total objective.
    """
    terms = get(results, "fit", "loss_terms")
    if not isinstance(terms, Mapping):
        return None
    nll, penalty = terms.get("nll"), terms.get("penalty")
    if not (isinstance(nll, Sequence) and isinstance(penalty, Sequence)) or isinstance(nll, str) \
            or isinstance(penalty, str) or not any(as_float(v) is not None for v in nll):
        return None
    return list(nll), list(penalty)


def loss_caption(results: Results) -> str:
    """The caption of the training figure: what is drawn depends on what was recorded."""
    if loss_terms(results) is not None:
        return ("Training, per step: the data term (negative log-likelihood summed over the training "
                "examples) and the penalty (the prior's negative log-density without its normalising "
                "constant, i.e. the regulariser). Their sum is the objective up to that constant, which "
                "moves only when the prior's strength is re-estimated.")
    return ("The objective minimised by the fit at every recorded step (these results do not record the "
            "data term and the penalty separately; the prior's normalising constant is included).")


def _section(results: Results, key: str) -> Mapping[str, Any]:
    value = results.get(key)
    return value if isinstance(value, Mapping) else {}


def setup_groups(results: Results) -> list[tuple[str, Items]]:
    """Section 1: data, network, prior, fit and selection, as labelled groups."""
    data, config, fit = (_section(results, key) for key in ("data", "config", "fit"))
    metric = results.get("metric")
    label = metric_label(results)
    source = get(config, "data", "source")
    groups: list[tuple[str, Items]] = [
        ("Data", [
            ("name", fmt_value(data.get("name", source))),
            ("task", fmt_value(data.get("task", get(config, "data", "task")))),
            ("training examples", fmt_int(data.get("n_train"))),
            ("test examples", fmt_int(data.get("n_test"))),
            ("features", fmt_int(data.get("n_features"))),
            ("outputs", fmt_int(data.get("n_outputs"))),
        ]),
        ("Network", [
            ("hidden widths", fmt_widths(get(config, "network", "hidden"))),
            ("activation", fmt_value(get(config, "network", "activation"))),
        ]),
        ("Prior", [
            ("kind", fmt_value(get(config, "prior", "kind"))),
            ("strength λ", fmt_value(get(config, "prior", "strength"))),
            ("guidance profile", fmt_value(get(config, "prior", "guidance"))),
            ("family", fmt_value(fit.get("prior"))),
        ]),
        ("Fit", [
            ("method", fmt_value(fit.get("method", get(config, "fit", "method")))),
            ("steps", fmt_int(fit.get("steps"))),
            *_warm_start(config),
            ("wall time", fmt_seconds(fit.get("wall_time_s"))),
            ("stop reason", fmt_value(fit.get("stop_reason"))),
            ("final objective", fmt_float(fit.get("final_loss"), 6)),
            *_final_terms(results),
            (f"train {label}", fmt_metric(fit.get("train_metric"), metric)),
            (f"test {label}", fmt_metric(fit.get("test_metric"), metric)),
        ]),
    ]
    select = get(config, "select")
    if isinstance(select, Mapping) and select:
        groups.append(("Selection", [(_SELECT_LABELS.get(str(k), str(k)), fmt_value(v)) for k, v in select.items()]))
    return groups


_SELECT_LABELS = {"occam": "architecture prior (occam)", "kappa": "architecture prior strength κ (kappa)"}
"""Reader's labels of ``[select]`` keys whose names alone mislead (the key in brackets)."""


def _warm_start(config: Any) -> Items:
    """The MAP steps an SVI fit started from (``[fit] warm_start``), when there were any: ``steps`` counts the rest."""
    warm = get(config, "fit", "warm_start")
    if isinstance(warm, bool) or not isinstance(warm, int) or warm <= 0:
        return []
    return [("warm start", f"{fmt_int(warm)} MAP steps before these (bg.fit_svi(warm_start=...))")]


def _final_terms(results: Results) -> Items:
    """The last finite data term and penalty, when recorded."""
    terms = loss_terms(results)
    if terms is None:
        return []
    out: Items = []
    for label, values in (("final data term (NLL)", terms[0]), ("final penalty", terms[1])):
        finite = [x for x in (as_float(v) for v in values) if x is not None]
        out.append((label, fmt_float(finite[-1] if finite else None, 6)))
    return out


def candidates_table(results: Results) -> Table:
    """Section 3: one row per candidate, in the order of the results (largest first)."""
    cands = candidate_rows(results)
    metric = results.get("metric")
    label = metric_label(results)
    has_test = any(get(c, "metrics", "test") is not None for c in cands)
    has_scale = any(c.get("prior_scale") is not None for c in cands)
    # which Gaussian the Laplace evidence used, shown when it is not every candidate's own prior
    has_prior_used = any(c.get("prior_used") not in (None, "own") for c in cands)
    columns = ["candidate", "widths", "params", "FLOPs", f"train {label}"]
    columns += [f"test {label}"] if has_test else []
    has_alone = any(c.get("evidence_prob") is not None for c in cands)
    columns += ["log evidence", "log architecture prior", "log posterior", "P(M\u00a0|\u00a0D)"]
    columns += ["P, evidence alone"] if has_alone else []
    columns += ["log Bayes factor"]
    columns += ["prior scale"] if has_scale else []
    columns += ["evidence prior"] if has_prior_used else []
    # the convergence check of each re-fit (pruning.convergence), when the candidates were fine-tuned
    has_tuning = any(c.get("converged") is not None for c in cands)
    columns += ["fine-tuning"] if has_tuning else []
    columns += ["status"]
    numeric = tuple(c not in ("candidate", "widths", "evidence prior", "fine-tuning", "status") for c in columns)
    best = _best_name(results)
    rows, kinds = [], []
    for c in cands:
        row = [fmt_value(c.get("name")), fmt_widths(c.get("widths")), fmt_int(c.get("n_params")),
               fmt_int(c.get("flops")), fmt_metric(get(c, "metrics", "train"), metric)]
        row += [fmt_metric(get(c, "metrics", "test"), metric)] if has_test else []
        row += [fmt_log(c.get("log_evidence")), fmt_log(c.get("log_prior")), fmt_log(c.get("log_posterior")),
                fmt_prob(c.get("posterior_prob"))]
        row += [fmt_prob(c.get("evidence_prob"))] if has_alone else []
        row += [fmt_log(c.get("log_bayes_factor"))]
        row += [fmt_float(c.get("prior_scale"))] if has_scale else []
        row += [fmt_value(c.get("prior_used"))] if has_prior_used else []
        row += [_fmt_tuning(c)] if has_tuning else []
        row += [fmt_value(c.get("status"))]
        rows.append(tuple(row))
        kinds.append("failed" if _is_failed(c) else "best" if best is not None and str(c.get("name")) == best
                     else "")
    return Table(tuple(columns), tuple(rows), tuple(kinds), numeric)


def _fmt_tuning(c: Mapping[str, Any]) -> str:
    """``"412 steps, converged"`` / ``"1,000 steps, NOT converged"`` (``"–"`` when not re-fitted)."""
    converged = c.get("converged")
    if converged is not True and converged is not False:
        return "–"
    steps = fmt_int(c.get("fine_tune_steps"))
    return f"{steps} steps, converged" if converged else f"{steps} steps, NOT converged"


def loo_table(results: Results) -> Table | None:
    """Section 4: PSIS-LOO per candidate, or ``None`` when no candidate has ``elpd_loo``.

    A negative standard error (impossible, so a corrupt value) is shown as missing.
    """
    cands = candidate_rows(results)
    if not any(as_float(c.get("elpd_loo")) is not None for c in cands):
        return None
    columns = ("candidate", "ELPD (LOO)", "± se", "Pareto k max", "stacking weight")
    rows, kinds = [], []
    best = _best_name(results)
    for c in cands:
        rows.append((fmt_value(c.get("name")), fmt_log(c.get("elpd_loo")), fmt_log(_non_negative(c.get("elpd_se"))),
                     fmt_float(c.get("pareto_k_max"), 3), fmt_prob(c.get("stacking_weight"))))
        kinds.append("failed" if _is_failed(c) else "best" if best is not None and str(c.get("name")) == best
                     else "")
    return Table(columns, tuple(rows), tuple(kinds), (False, True, True, True, True))


def _non_negative(value: Any) -> Any:
    """``value``, or ``None`` when it is a negative number (a standard error cannot be)."""
    x = as_float(value)
    return None if x is not None and x < 0 else value


def recommendation(results: Results) -> Items | None:
    """Section 5: the recommended architecture, or ``None`` when there is none."""
    rec = results.get("recommended")
    if not isinstance(rec, Mapping):
        return None
    params, full = as_float(rec.get("n_params")), as_float(rec.get("n_params_full"))
    flops, flops_full = as_float(rec.get("flops")), as_float(rec.get("flops_full"))
    speedup = as_float(rec.get("speedup"))
    items: Items = [
        ("architecture", fmt_value(rec.get("name"))),
        ("hidden widths", fmt_widths(rec.get("widths"))),
        ("parameters", f"{fmt_int(params)} of {fmt_int(full)}"
         + (f" ({fmt_percent(params / full)})" if params is not None and full else "")),
        ("FLOPs per example", f"{fmt_int(flops)} of {fmt_int(flops_full)}"
         + (f" ({fmt_percent(flops / flops_full)})" if flops is not None and flops_full else "")),
        (_latency_label(results), f"{_ms(rec.get('latency_ms'))} (full network: {_ms(rec.get('latency_full_ms'))})"),
        ("speed-up", MISSING if speedup is None else f"{speedup:.2f}×"),
    ]
    return items


RUN_LATENCY_BATCH = 256
"""The batch of results written before ``recommended.latency_batch`` was recorded."""


def _latency_label(results: Results) -> str:
    """``"latency (batch of 256, 4 torch threads)"``: what the timing was measured under.

    The batch size is ``recommended.latency_batch`` as the runner records it; results
    written before that field existed used the runner's batch of 256
    (`RUN_LATENCY_BATCH`); the threads are ``environment.threads`` (torch's
    intra-op threads during the run) when recorded.
    """
    rec = results.get("recommended")
    if not isinstance(rec, Mapping) or as_float(rec.get("latency_ms")) is None:
        return "latency"
    batch = as_float(rec.get("latency_batch"))
    parts = [f"batch of {fmt_int(batch if batch is not None else RUN_LATENCY_BATCH)}"]
    threads = as_float(get(results, "environment", "threads"))
    parts.append("torch threads not recorded" if threads is None
                 else f"{fmt_int(threads)} torch thread{'s' if threads != 1 else ''}")
    return f"latency ({', '.join(parts)})"


def _ms(value: Any) -> str:
    x = fmt_float(value, 3)
    return x if x == MISSING else f"{x} ms"


_LEGACY_WORDS = (
    ("Occam prior", "architecture prior"),  # the prior over architectures (not the Laplace Occam factor)
)
"""Wording of flags as older versions wrote them → as the report says it now."""
_CLI_HINTS = (
    ("; raise fine_tune", "; raise [select] fine_tune in the experiment file"),
)
"""Hints naming a Python argument → the experiment-file key, for results of an experiment file."""


def flags(results: Results) -> list[str]:
    """Section 6: every diagnostic flag, as text.

    Flags keep their words, except that "Occam prior" (older results) reads "architecture
    prior", and, for results of an experiment file, a hint naming a Python argument names
    the experiment-file key instead (``raise [select] fine_tune``).
    """
    raw = results.get("flags")
    if raw is None:
        return []
    if isinstance(raw, str):
        texts = [raw]
    else:
        texts = [str(f) for f in raw] if isinstance(raw, Sequence) else [str(raw)]
    replacements = _LEGACY_WORDS + (_CLI_HINTS if for_experiment_file(results) else ())
    out = []
    for text in texts:
        for old, new in replacements:
            text = text.replace(old, new)
        out.append(text)
    return out
