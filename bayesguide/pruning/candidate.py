"""``Candidate`` and ``prune``: from a fit to one physically smaller network.

``prune(fit, ...)`` scores every unit ([`scores`][bayesguide.pruning.scores]), decides
which to keep ([`decisions`][bayesguide.pruning.decisions]), cuts a new, smaller network
([`surgery`][bayesguide.pruning.surgery]) and carries the prior and the approximate posterior
over to it ([`transfer`][bayesguide.pruning.transfer]).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bayesguide.infer import FitResult
from bayesguide.model import ArrayLike, GuidedModel
from bayesguide.model.batches import BatchStream, is_batches
from bayesguide.posterior import DeltaGuide, Fitted, Guide
from bayesguide.pruning.decisions import (
    Budget,
    BudgetUnit,
    Context,
    Decision,
    KeepK,
    Prefix,
    Relative,
    RuleName,
    Threshold,
    guard_empty,
)
from bayesguide.pruning.merge import Merges
from bayesguide.pruning.scores import UnitScore, make_score
from bayesguide.pruning.structure import Structure, analyse, costs, output_positions
from bayesguide.pruning.surgery import apply_plan, plan_surgery
from bayesguide.pruning.transfer import pruned_model, slice_guide

__all__ = ["Candidate", "build", "check_mergeable", "check_scores", "prune", "setup", "with_tuning"]


@dataclass(frozen=True)
class Candidate(Fitted):
    """A pruned architecture: a smaller dense network, its prior and its posterior.

    A [`Fitted`][bayesguide.posterior.Fitted] like the fit it was cut from: every scorer
    (evidence, leave-one-out, metrics) reads ``module``, ``guide`` and ``noise``, which
    are the fine-tuned ones once the candidate has been fine-tuned — set only through
    [`with_tuning`][bayesguide.pruning.candidate.with_tuning], so the two can never disagree.

    Attributes
    ----------
    module
        The new, smaller ``nn.Module`` (eval mode); the fit's network is untouched.
        After fine-tuning, the fine-tuned network (``tuned.module``).
    widths
        Hidden widths (units of each prunable layer), in layer order.
    kept
        Per prunable layer, the original indices of the kept units (ascending).
    n_params
        Parameters of the pruned network.
    flops
        FLOPs per example (2 per multiply-add of the ``Linear`` / ``Conv2d`` layers;
        ``None`` for a CNN whose input shape was not given).
    original_widths
        The fitted network's hidden widths.
    original_params
        The fitted network's parameters.
    original_flops
        The fitted network's FLOPs per example.
    model
        A [`GuidedModel`][bayesguide.GuidedModel] around ``module`` with the fit's prior family
        and strength and the kept units' guidance coefficients.
    guide
        The fit's guide marginalised onto the kept weights (after fine-tuning,
        ``tuned.guide``).
    fit
        The fit the candidate was cut from (provenance).
    rule
        How the units were chosen, in words.
    retained
        Per prunable layer, units the rule removed but surgery kept because their
        constant output could not be folded exactly into the next layer.
    data_fingerprint
        The fingerprint of the training data (the fit's).
    tuned
        The fine-tuning fit (warm-started MAP steps on ``model``), or ``None``.
    """

    module: nn.Module
    widths: tuple[int, ...]
    kept: dict[str, tuple[int, ...]]
    n_params: int
    flops: int | None
    original_widths: tuple[int, ...]
    original_params: int
    original_flops: int | None
    model: GuidedModel
    guide: Guide
    fit: FitResult
    rule: str
    retained: dict[str, tuple[int, ...]]
    data_fingerprint: str
    tuned: FitResult | None = None

    def __post_init__(self) -> None:
        if self.tuned is not None and (self.module is not self.tuned.module or self.guide is not self.tuned.guide):
            raise ValueError(
                "a fine-tuned candidate scores its fine-tuned weights: set tuned through "
                "bayesguide.pruning.with_tuning(candidate, fit), which also sets module and guide"
            )

    @property
    def label(self) -> str:
        return f"candidate {self.name}"

    @property
    def name(self) -> str:
        """A short label, e.g. ``"w12-5"``."""
        return "w" + "-".join(str(w) for w in self.widths)

    @property
    def compression(self) -> float:
        """``original_params / n_params``."""
        return self.original_params / self.n_params

    def __str__(self) -> str:
        flops = "" if self.flops is None or self.original_flops is None else (
            f", {self.flops:,} FLOPs ({self.flops / max(self.original_flops, 1):.1%})"
        )
        lines = [
            f"Candidate {self.name}: widths {list(self.widths)} of {list(self.original_widths)}, "
            f"{self.n_params:,} parameters ({self.n_params / self.original_params:.1%}){flops}",
            f"  rule: {self.rule}"
            + ("" if self.tuned is None else f"; fine-tuned {self.tuned.steps} MAP steps"),
        ]
        for i, (layer, idx) in enumerate(self.kept.items(), start=1):  # counted as a reader counts them
            shown = ", ".join(map(str, idx[:12])) + (", …" if len(idx) > 12 else "")
            lines.append(f"  hidden layer {i} (module {layer}): kept {len(idx)} units [{shown}]")
            if self.retained.get(layer):
                lines.append(f"    retained (constant not foldable): {list(self.retained[layer])}")
        return "\n".join(lines)


def _resolve_rule(
    rule: str | RuleName | Decision | None, threshold: float | None, fraction: float | None,
    keep: int | Mapping[str, int] | None, budget: float | None, budget_unit: str,
) -> tuple[Decision, str]:
    given = {k: v for k, v in (("threshold", threshold), ("fraction", fraction), ("keep", keep),
                               ("budget", budget)) if v is not None}
    if rule is not None and callable(rule) and not isinstance(rule, str):
        return rule, getattr(rule, "__name__", repr(rule))
    if rule is None:
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of threshold, fraction, keep or budget (or a rule); got "
                f"{sorted(given) or 'none'}"
            )
        rule = {"threshold": RuleName.THRESHOLD, "fraction": RuleName.RELATIVE, "keep": RuleName.KEEP_K,
                "budget": RuleName.BUDGET}[next(iter(given))]
    member = RuleName.resolve(rule, "rule")
    need = {RuleName.THRESHOLD: "threshold", RuleName.RELATIVE: "fraction", RuleName.KEEP_K: "keep",
            RuleName.BUDGET: "budget"}
    if member is RuleName.PREFIX:
        p = Prefix(keep=keep, threshold=threshold)
        return p, f"prefix({'keep=' + str(keep) if keep is not None else f'threshold={threshold:g}'})"
    if need[member] not in given:
        raise ValueError(f"rule {member.value!r} needs {need[member]}=...")
    decision: Decision
    if member is RuleName.THRESHOLD and threshold is not None:
        decision = Threshold(threshold)
    elif member is RuleName.RELATIVE and fraction is not None:
        decision = Relative(fraction)
    elif member is RuleName.KEEP_K and keep is not None:
        decision = KeepK(keep)
    else:
        assert budget is not None
        decision = Budget(budget, BudgetUnit.resolve(budget_unit, "budget unit"))
    return decision, f"{member.value}({need[member]}={given[need[member]]})"


def check_scores(scores: Mapping[str, np.ndarray], structure: Structure) -> dict[str, np.ndarray]:
    """Validate a score's output against the network: every prunable layer, right length, finite."""
    if list(scores) != structure.names:
        raise ValueError(f"scores name layers {list(scores)}, expected the prunable layers {structure.names}")
    out: dict[str, np.ndarray] = {}
    for b in structure.blocks:
        s = np.asarray(scores[b.layer.name], dtype=np.float64)
        if s.shape != (b.n_units,) or not np.isfinite(s).all():
            raise ValueError(f"scores of layer {b.layer.name!r} must be {b.n_units} finite numbers, got {s}")
        out[b.layer.name] = s
    return out


def build(
    fit: FitResult, structure: Structure, masks: Mapping[str, np.ndarray], rule: str,
    positions: dict[str, int] | None, merges: Merges | None = None,
) -> Candidate:
    """Cut the candidate for keep-``masks`` (after [`guard_empty`][bayesguide.pruning.decisions.guard_empty]).

    ``merges``: removed units folded into kept ones ([`bayesguide.pruning.merge`][]; the
    fit must be a point estimate, whose guide is the network itself).
    """
    if merges:
        check_mergeable(fit)
    plan = plan_surgery(structure, {k: torch.as_tensor(v) for k, v in masks.items()}, merges)
    module = apply_plan(fit.module, structure, plan).eval()
    model = pruned_model(fit.model, module, plan)
    guide = slice_guide(fit.guide, fit.model, model, module, plan)
    full = {b.layer.name: b.n_units for b in structure.blocks}
    widths = {k: len(v) for k, v in plan.kept.items()}
    p0, f0 = costs(structure, full, positions)
    p1, f1 = costs(structure, widths, positions)
    return Candidate(
        module=module, widths=tuple(widths.values()), kept=dict(plan.kept), n_params=p1,
        flops=None if f1 < 0 else f1, original_widths=tuple(full.values()), original_params=p0,
        original_flops=None if f0 < 0 else f0, model=model, guide=guide, fit=fit, rule=rule,
        retained={k: v for k, v in plan.retained.items() if v}, data_fingerprint=fit.data_fingerprint,
    )


def check_mergeable(fit: FitResult) -> None:
    """Refuse to merge units of a fit whose posterior is not a point estimate (it is sliced, not merged)."""
    if not isinstance(fit.guide, DeltaGuide):
        raise ValueError(f"merge needs a point-estimate fit (MAP): this fit's posterior is a "
                         f"{type(fit.guide).__name__}, which pruning slices but cannot merge")


def setup(
    fit: FitResult, X: ArrayLike | None, y: ArrayLike | None, input_shape: Sequence[int] | None
) -> tuple[Structure, dict[str, int] | None, Context]:
    """Analyse the fit's network, check the data, find spatial sizes; the decision context."""
    if not isinstance(fit, FitResult):
        raise TypeError(f"expected a FitResult from bg.fit_map or bg.fit_svi, got {type(fit).__name__}")
    if X is not None and is_batches(X):
        stream, _ = fit.training_data(X, y)  # a loader (y omitted): checked against the fit
        assert isinstance(stream, BatchStream)
        input_shape = stream.feature_shape if input_shape is None else input_shape
    elif (X is None) != (y is None):
        raise ValueError("pass both X and y (the training data) or neither")
    elif X is not None and y is not None:
        Xt, _ = fit.prepare(X, y)
        input_shape = tuple(Xt.shape[1:]) if input_shape is None else input_shape
    structure = analyse(fit.module)
    try:
        positions: dict[str, int] | None = output_positions(fit.module, structure, input_shape)
    except ValueError:
        positions = None
    order = {s.layer.name: np.argsort(fit.model.coefficients[s.name].numpy(), kind="stable")
             for s in fit.model.prunable_sites}

    def cost(widths: Mapping[str, int]) -> tuple[int, int]:
        return costs(structure, widths, positions)

    return structure, positions, Context(order, cost)


def prune(
    fit: FitResult,
    threshold: float | None = None,
    *,
    rule: str | RuleName | Decision | None = None,
    score: str | UnitScore = "norm",
    direction: str = "incoming",
    fraction: float | None = None,
    keep: int | Mapping[str, int] | None = None,
    budget: float | None = None,
    budget_unit: str = "params",
    eps: float = 1e-3,
    samples: int = 256,
    X: ArrayLike | None = None,
    y: ArrayLike | None = None,
    input_shape: Sequence[int] | None = None,
) -> Candidate:
    """Prune a fit: score the units, decide, and cut a smaller network.

    Parameters
    ----------
    fit
        A MAP or SVI [`FitResult`][bayesguide.FitResult].
    threshold
        Keep the units with score ``> threshold`` (give one of ``threshold``,
        ``fraction``, ``keep``, ``budget``: the decision).
    fraction
        Keep the units with score ``> fraction · max`` of their layer.
    keep
        Keep the ``keep`` best units per layer (an int or ``{layer: k}``).
    budget
        Keep the best units within ``budget`` parameters (or FLOPs,
        ``budget_unit="flops"``).
    rule
        ``"threshold"``, ``"relative"``, ``"keep_k"``, ``"prefix"`` (first ``keep`` units
        of the guided order, or the shortest guided prefix holding every unit above
        ``threshold``), ``"budget"``, or any callable decision (see
        [`bayesguide.pruning.decisions`][]).
    score
        ``"norm"`` (``‖θ_j‖₂/√p``; ``direction`` ``"incoming"``, ``"outgoing"`` or
        ``"both"``), ``"inclusion"`` (posterior probability that the unit's norm exceeds
        ``eps``, from ``samples`` draws; SVI fits), ``"snr"`` (SVI fits), ``"guidance"``,
        or any callable score (see [`bayesguide.pruning.scores`][]).
    X
        The training inputs (optional): checked against the fit's fingerprint with
        ``y``; their shape gives the input shape for FLOPs. Or a data loader of ``(X, y)``
        batches, checked likewise ([`Fitted.training_data`][bayesguide.posterior.Fitted.training_data]).
    y
        The training targets (optional, with ``X``; omitted for a loader).
    input_shape
        Shape of one example, for the FLOPs of a convolutional network.

    Returns
    -------
    Candidate

    Warns
    -----
    PruningWarning
        When the rule would remove every unit of a layer: its best unit is kept.

    Examples
    --------
    >>> import torch, bayesguide as bg
    >>> from bayesguide.pruning import prune
    >>> _ = torch.manual_seed(0)
    >>> X = torch.randn(64, 4); y = (X[:, 0] > 0).long()
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    >>> model = bg.GuidedModel(net, bg.GuidedGroupLasso(2.0, bg.guidance.linear()))
    >>> fit = bg.fit_map(model, X, y, steps=300, lr=0.02, schedule="cosine", progress=False)
    >>> cand = prune(fit, threshold=1e-3)
    >>> cand.widths[0] < 16, bool((cand.predict(X) - fit.predict(X)).abs().max() < 1e-4)
    (True, True)
    """
    structure, positions, context = setup(fit, X, y, input_shape)
    if not structure.blocks:
        raise ValueError("nothing to prune: the network has no hidden Linear or Conv2d layer (only the output "
                         "layer, which is never pruned)")
    decision, described = _resolve_rule(rule, threshold, fraction, keep, budget, budget_unit)
    scorer = make_score(score, direction=direction, eps=eps, samples=samples)
    scores = check_scores(scorer(fit), structure)
    masks = guard_empty(decision(scores, context), scores)
    name = score if isinstance(score, str) else getattr(score, "__name__", type(score).__name__)
    return build(fit, structure, masks, f"{described} on score {name!r}", positions)


def with_tuning(cand: Candidate, tuned: FitResult, data: BatchStream | None = None) -> Candidate:
    """``cand`` with the fine-tuned network and guide of ``tuned`` (the only way to set ``tuned``).

    ``tuned`` must have been trained on the candidate's data: the same fingerprint, or —
    for a candidate of a fit made from tensors, fine-tuned on a data loader — on the
    stream ``data``, which was checked to hold those data
    ([`BatchStream.holds`][bayesguide.model.batches.BatchStream.holds]); ``tuned`` then
    takes the candidate's fingerprint.
    """
    if not isinstance(tuned, FitResult):
        raise TypeError(f"with_tuning takes the fine-tuning FitResult, got {type(tuned).__name__}")
    if (tuned.data_fingerprint != cand.data_fingerprint and data is not None
            and tuned.data_fingerprint == data.fingerprint and data.holds(cand.data_fingerprint)):
        tuned = dataclasses.replace(tuned, data_fingerprint=cand.data_fingerprint)
    if tuned.data_fingerprint != cand.data_fingerprint:
        raise ValueError("the fine-tuning fit was trained on other data than the candidate's fit")
    return dataclasses.replace(cand, module=tuned.module, guide=tuned.guide, tuned=tuned)
