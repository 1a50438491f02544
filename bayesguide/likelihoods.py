"""Observation models ``p(y | f(x; θ))`` for the network output ``f``.

Each likelihood knows four things: how to check targets before any training
([`Likelihood.prepare_targets`][bayesguide.likelihoods.Likelihood.prepare_targets]), its Pyro distribution for the
model, the summed
log-likelihood of a batch written directly in torch (the lean path of
[`bayesguide.fit_map`][]; tests check that the two agree), and the task metric every
table reports ([`Likelihood.metric`][bayesguide.likelihoods.Likelihood.metric]: accuracy or RMSE). Foundation module: it
imports nothing else from bayesguide but the option base class.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch.nn import functional as F

from bayesguide._options import Option

__all__ = ["Likelihood"]


class Likelihood(Option):
    """Observation model of the network output."""

    CATEGORICAL = "categorical", "class indices, softmax of the outputs (cross-entropy)"
    """``y ~ Categorical(logits=f(x))``; ``y`` holds class indices ``0 … C-1``."""
    GAUSSIAN = "gaussian", "real targets, Normal(output, σ) (squared error)"
    """``y ~ Normal(f(x), σ)``; ``σ`` fixed (``noise=σ``) or learned (``noise=None``)."""
    BERNOULLI = "bernoulli", "0/1 targets, sigmoid of the outputs (binary cross-entropy)"
    """``y ~ Bernoulli(logits=f(x))``; ``y`` in ``{0, 1}``, one column per output."""

    @property
    def metric_name(self) -> str:
        """``"accuracy"`` (categorical, bernoulli) or ``"rmse"`` (gaussian): what `metric` returns."""
        return "rmse" if self is Likelihood.GAUSSIAN else "accuracy"

    def metric(self, out: torch.Tensor, y: torch.Tensor) -> float:
        """The task metric of network outputs ``out`` for prepared targets ``y``.

        Accuracy for ``categorical`` (arg-max class) and ``bernoulli`` (logit > 0, every
        output column), root mean squared error for ``gaussian``.

        Examples
        --------
        >>> Likelihood.BERNOULLI.metric(torch.tensor([[2.0], [-1.0]]), torch.tensor([[1.0], [1.0]]))
        0.5
        """
        return self.metric_from_sums(*self.metric_sums(out, y))

    def metric_sums(self, out: torch.Tensor, y: torch.Tensor) -> tuple[float, int]:
        """The parts of `metric` on one batch, to be summed over batches: ``(total, count)``.

        ``total`` is the number of correct predictions (accuracy) or the sum of squared
        errors (RMSE), in float64; ``count`` the number of predictions.
        [`metric_from_sums`][bayesguide.likelihoods.Likelihood.metric_from_sums] turns the sums
        over all batches into the metric, so data that do not fit in memory are scored
        batch by batch.

        Examples
        --------
        >>> L = Likelihood.GAUSSIAN
        >>> out, y = torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([[1.0], [1.0], [2.0]])
        >>> parts = [L.metric_sums(out[:2], y[:2]), L.metric_sums(out[2:], y[2:])]
        >>> rmse = L.metric_from_sums(sum(p[0] for p in parts), sum(p[1] for p in parts))
        >>> round(rmse, 6), round(L.metric(out, y), 6)
        (1.290994, 1.290994)
        """
        with torch.no_grad():
            if self is Likelihood.CATEGORICAL:
                hits = out.argmax(1) == y
            elif self is Likelihood.BERNOULLI:
                hits = (out > 0).to(y.dtype) == y
            else:
                err = (out - y.reshape(out.shape)).to(torch.float64)
                return float(err.pow(2).sum()), err.numel()
            return float(hits.sum()), hits.numel()

    def metric_from_sums(self, total: float, count: int) -> float:
        """`metric` from the sums of [`metric_sums`][bayesguide.likelihoods.Likelihood.metric_sums] over all batches."""
        if count == 0:
            raise ValueError("no predictions to score (count 0)")
        mean = total / count
        return math.sqrt(mean) if self is Likelihood.GAUSSIAN else mean

    def prepare_targets(self, y: torch.Tensor, out_dim: int, dtype: torch.dtype) -> torch.Tensor:
        """Validate ``y`` for this likelihood and an output of ``out_dim`` columns.

        Returns ``y`` as a long tensor ``(N,)`` (categorical) or a float tensor
        ``(N, out_dim)`` (gaussian, bernoulli). A categorical network needs at least two
        outputs; the labels present are not counted (a test subset may hold one class).
        """
        if self is Likelihood.CATEGORICAL:
            if out_dim < 2:
                raise ValueError(
                    f"a categorical likelihood needs a network with one output per class (at least 2), "
                    f"got {out_dim}: the softmax of one output is always 1; for a 0/1 target use "
                    f"likelihood='bernoulli'"
                )
            if y.ndim != 1:
                raise ValueError(
                    f"categorical targets must be 1-D class indices, got shape {tuple(y.shape)}"
                )
            if y.is_floating_point():
                if not torch.equal(y, y.round()):
                    raise ValueError("categorical targets must be integers (class indices)")
            elif y.dtype == torch.bool:
                raise ValueError("categorical targets must be integer class indices, got bool")
            if y.numel() == 0:
                raise ValueError("categorical targets are empty")
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= out_dim:
                raise ValueError(
                    f"categorical labels must lie in [0, {out_dim - 1}] for a network with "
                    f"{out_dim} outputs; found labels in [{lo}, {hi}]"
                )
            return y.long()
        shape = tuple(y.shape)
        y = y.to(dtype)
        if y.ndim == 1 and out_dim == 1:
            y = y.unsqueeze(-1)
        if y.ndim != 2 or y.shape[1] != out_dim:
            n = shape[0] if shape else "N"
            valid = f"({n},) or ({n}, 1)" if out_dim == 1 else f"({n}, {out_dim})"
            raise ValueError(
                f"{self.value} targets of shape {shape} do not match a network with "
                f"{out_dim} outputs; expected {valid}"
            )
        if self is Likelihood.BERNOULLI and not ((y == 0) | (y == 1)).all():
            raise ValueError("bernoulli targets must be 0 or 1")
        return y

    def distribution(self, out: torch.Tensor, noise: torch.Tensor | None) -> dist.TorchDistribution:
        """Pyro distribution of a batch of targets, batch shape ``(B,)`` (on ``out``'s device)."""
        if self is Likelihood.CATEGORICAL:
            return dist.Categorical(logits=out)
        if self is Likelihood.GAUSSIAN:
            assert noise is not None
            return dist.Normal(out, noise.to(out.device)).to_event(1)
        return dist.Bernoulli(logits=out).to_event(1)

    def log_prob_sum(
        self, out: torch.Tensor, y: torch.Tensor, noise: torch.Tensor | None
    ) -> torch.Tensor:
        """``Σ_i log p(y_i | out_i)`` over the batch, written directly in torch."""
        return -self.nll_sum(out, y, noise)

    def nll_sum(
        self, out: torch.Tensor, y: torch.Tensor, noise: torch.Tensor | None
    ) -> torch.Tensor:
        """``−Σ_i log p(y_i | out_i)``: `log_prob_sum` negated, computed without the negation.

        The training objectives minimise this, so their autograd graph holds no
        negation nodes (``−(−cross_entropy)`` costs two kernels forward and two backward).
        """
        if self is Likelihood.CATEGORICAL:
            return F.cross_entropy(out, y, reduction="sum")
        if self is Likelihood.GAUSSIAN:
            assert noise is not None
            sq = (y - out).pow(2).sum()
            n = y.numel()
            return 0.5 * sq / noise.pow(2) + n * torch.log(noise) + 0.5 * n * math.log(2 * math.pi)
        return F.binary_cross_entropy_with_logits(out, y, reduction="sum")

    def pointwise_log_prob(
        self, out: torch.Tensor, y: torch.Tensor, noise: torch.Tensor | None
    ) -> torch.Tensor:
        """``log p(y_i | out_i)`` per example, shape ``(B,)``."""
        return self.distribution(out, noise).log_prob(y)
