"""Data that do not fit in memory: a re-iterable of ``(X, y)`` batches with a stated size.

[`Batches`][bayesguide.model.batches.Batches] wraps a ``torch.utils.data.DataLoader`` —
or any re-iterable of ``(X, y)`` pairs — together with the number of examples ``n``
one pass over it yields. [`bayesguide.fit_map`][], [`bayesguide.fit_svi`][] and
[`bayesguide.evidence`][] (``method="laplace"``) take it in place of ``X, y``; a
``DataLoader`` over a sized dataset may also be passed directly (``n`` is then
``len(loader.dataset)``).

[`BatchStream`][bayesguide.model.batches.BatchStream] is what they read: the batches
validated against a model, one pass per ``iter()``. Before any work it reads the first
batch and checks it like in-memory data ([`prepare_data`][bayesguide.model.data.prepare_data]);
every later batch is checked for the same feature shape, the likelihood's targets and
finite values, and every pass for the number of examples it yields (``n``; with
``drop_last=True`` a pass may stop short of it by less than one batch). Each failure is
a ``ValueError`` that names the batch and the problem.

**The fingerprint of a loader.** In-memory data are identified by a hash of their
contents ([`data_fingerprint`][bayesguide.model.data.data_fingerprint]). Hashing a loader's
contents would cost a pass over the data and depend on its order (a shuffled loader
yields another first batch at every pass), so a loader is identified cheaply by
``"batches:"`` and a hash of ``n``, the feature and target shapes and dtypes of the
prepared batches, and the optional ``key`` you give (e.g. a file name and version). A fit
from a loader is continued and scored only on a loader with the same fingerprint. A fit on
tensors may be scored from a loader: its contents are then hashed in the loader's order,
in two extra passes, and must match (so such a loader must not shuffle).

Examples
--------
>>> import torch
>>> from torch.utils.data import DataLoader, TensorDataset
>>> loader = DataLoader(TensorDataset(torch.randn(10, 3), torch.randn(10)), batch_size=4)
>>> Batches(loader).n
10
>>> Batches([(torch.randn(4, 3), torch.randn(4))] * 2, n=8).n
8
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from bayesguide.likelihoods import Likelihood
from bayesguide.model.data import ArrayLike, as_tensor, prepare_data

__all__ = ["BatchStream", "Batches", "as_batches", "is_batches", "open_stream", "stream_metric"]


class Batches:
    """A re-iterable of ``(X, y)`` batches holding ``n`` examples in all.

    Parameters
    ----------
    source
        A ``torch.utils.data.DataLoader``, or any object that yields a fresh pass of
        ``(X, y)`` pairs at every ``iter()`` (a list, a class with ``__iter__``). A
        one-shot iterator (a generator object) cannot be read twice and is refused.
    n
        The number of examples one pass yields: the ``N`` of the ``N / B`` scaling of a
        batch's log-likelihood. Default: ``len(source.dataset)`` for a ``DataLoader``
        over a sized dataset; required otherwise. For such a loader an ``n`` that
        differs from the dataset's length is refused at once; otherwise every pass is
        counted and a wrong ``n`` is a ``ValueError`` at the end of the first pass.
    key
        An optional name of the data (e.g. ``"train.npy@v3"``), part of the fingerprint
        (see the module docstring): fits on loaders with other keys are told apart.

    Examples
    --------
    >>> Batches(iter([]), n=3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: Batches needs a re-iterable source ...; a one-shot iterator (list_iterator) can be read only once
    """

    source: Iterable[Any]
    n: int
    key: str | None
    slack: int
    """How many examples a pass may fall short of ``n`` (``drop_last=True``: less than a batch)."""

    def __init__(self, source: Iterable[Any], n: int | None = None, *, key: str | None = None) -> None:
        if isinstance(source, Batches):
            n = source.n if n is None else n
            key = source.key if key is None else key
            source = source.source
        if isinstance(source, (torch.Tensor, str, bytes)) or not hasattr(source, "__iter__"):
            raise TypeError(f"Batches needs an iterable of (X, y) batches, got {type(source).__name__}")
        if isinstance(source, Iterator):
            raise TypeError(
                "Batches needs a re-iterable source (a DataLoader, a list, an object with __iter__); a one-shot "
                f"iterator ({type(source).__name__}) can be read only once"
            )
        size = _dataset_len(source)
        if n is None:
            if size is None:
                raise TypeError(
                    f"Batches of a {type(source).__name__} needs n=, the number of examples one pass yields "
                    f"(only a DataLoader over a sized dataset has it)"
                )
            n = size
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int (the number of examples), got {n!r}")
        if size is not None and n != size:
            raise ValueError(
                f"n={n} but the loader's dataset has {size} examples: n is the number of examples one pass yields"
            )
        self.source = source
        self.n = n
        self.key = key
        self.slack = 0
        if isinstance(source, DataLoader) and source.drop_last and source.batch_size is not None:
            self.slack = int(source.batch_size) - 1

    def __iter__(self) -> Iterator[Any]:
        return iter(self.source)

    def __repr__(self) -> str:
        return f"Batches({type(self.source).__name__}, n={self.n}" + (f", key={self.key!r})" if self.key else ")")


def _dataset_len(source: Any) -> int | None:
    """``len(source.dataset)`` for a ``DataLoader`` over a sized dataset, else ``None``."""
    if not isinstance(source, DataLoader):
        return None
    try:
        return len(source.dataset)  # type: ignore[arg-type]
    except TypeError:
        return None


def is_batches(X: Any) -> bool:
    """Whether ``X`` is a data loader (a ``DataLoader``, [`Batches`][bayesguide.model.batches.Batches] or a
    [`BatchStream`][bayesguide.model.batches.BatchStream])."""
    return isinstance(X, (Batches, DataLoader, BatchStream))


def as_batches(X: ArrayLike, y: ArrayLike | None) -> Batches | None:
    """``X`` as [`Batches`][bayesguide.model.batches.Batches] when it is a loader (``y`` then omitted), else ``None``.

    Raises
    ------
    ValueError
        For a loader together with ``y`` (the loader yields the targets), and for a
        missing ``y`` with array data.
    """
    if is_batches(X):
        if y is not None:
            raise ValueError("pass a data loader alone, without y: it yields (X, y) batches")
        if isinstance(X, BatchStream):
            return X.batches
        return X if isinstance(X, Batches) else Batches(X)
    if y is None:
        raise TypeError(
            f"y is missing: pass X, y (arrays or tensors) or a data loader of (X, y) batches, got X of type "
            f"{type(X).__name__}"
        )
    return None


class BatchStream:
    """[`Batches`][bayesguide.model.batches.Batches] validated against a model; each ``iter()`` is one pass.

    Construction reads the first batch and checks it like in-memory data (shapes, finite
    values, the network's input, the likelihood's targets); each pass yields the
    batches prepared — inputs in ``dtype``, targets as the likelihood needs them (see
    ``Likelihood.prepare_targets``) — on the device the loader put them on, and checks
    every batch and the number of examples of the pass (see the module docstring).

    Attributes
    ----------
    n
        The number of examples of one pass.
    fingerprint
        ``"batches:"`` and a hash of ``n``, shapes, dtypes and the ``key``.
    """

    def __init__(self, batches: Batches, net: nn.Module, likelihood: Likelihood, dtype: torch.dtype) -> None:
        self.batches = batches
        self.n = batches.n
        self.likelihood = likelihood
        self.dtype = dtype
        first = next(iter(batches), None)
        if first is None:
            raise ValueError(f"the data loader is empty: its first pass yielded no batch (n={self.n})")
        xb, yb = _pair(first, 0)
        xt, yt = prepare_data(net, likelihood, dtype, xb, yb)
        self.feature_shape = tuple(xt.shape[1:])
        self.target_shape = tuple(yt.shape[1:])
        self.out_dim = yt.shape[1] if yt.ndim == 2 else _out_dim(net, xt)
        h = hashlib.sha1(repr((
            self.n, self.feature_shape, str(xt.dtype), self.target_shape, str(yt.dtype), batches.key,
        )).encode())
        self.fingerprint = "batches:" + h.hexdigest()[:16]
        self._checked: set[str] = set()  # fit fingerprints this stream was found to hold the data of

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count = 0
        for i, batch in enumerate(self.batches):
            xb, yb = self._prepare(batch, i)
            count += xb.shape[0]
            if count > self.n:
                raise ValueError(
                    f"the data loader yielded more than n={self.n} examples in one pass (batch {i} brings it to "
                    f"{count}): n must be the number of examples one pass yields"
                )
            yield xb, yb
        if count == 0:
            raise ValueError(f"the data loader is empty: a pass yielded no batch (n={self.n})")
        if count < self.n - self.batches.slack:
            raise ValueError(
                f"the data loader yielded {count} examples in one pass, but n={self.n}: n must be the number of "
                f"examples one pass yields"
            )

    def _prepare(self, batch: Any, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        xb, yb = _pair(batch, i)
        x, y = as_tensor(xb, f"X of batch {i}"), as_tensor(yb, f"y of batch {i}")
        if x.ndim < 1 or tuple(x.shape[1:]) != self.feature_shape:
            raise ValueError(
                f"batch {i} has X of shape {tuple(x.shape)}, but the first batch's rows have shape "
                f"{self.feature_shape}: every batch must hold rows of the same shape"
            )
        n_y = y.shape[0] if y.ndim else 0
        if x.shape[0] != n_y:
            raise ValueError(f"batch {i} has {x.shape[0]} rows of X but {n_y} of y: they must have the same length")
        if x.shape[0] == 0:
            raise ValueError(f"batch {i} is empty (0 rows)")
        for name, t in (("X", x), ("y", y)):
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise ValueError(f"{name} of batch {i} contains NaN or inf")
        try:
            y = self.likelihood.prepare_targets(y, self.out_dim, self.dtype)
        except ValueError as err:
            raise ValueError(f"batch {i}: {err}") from None
        return x.to(self.dtype), y

    def content_fingerprint(self) -> str:
        """The [`data_fingerprint`][bayesguide.model.data.data_fingerprint] of the loader's data, in two passes.

        Equal to the fingerprint of the tensors one would get by concatenating the
        prepared batches (without building them): ``X`` is hashed in one pass, ``y`` in a
        second (the in-memory fingerprint hashes all of ``X`` before ``y``).
        """
        h = hashlib.sha1()
        h.update(str((self.n, *self.feature_shape)).encode())
        count = 0
        for xb, _ in self:
            count += xb.shape[0]
            h.update(xb.detach().cpu().contiguous().numpy().tobytes())
        h.update(str((count, *self.target_shape)).encode())
        for _, yb in self:
            h.update(yb.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def holds(self, fingerprint: str) -> bool:
        """Whether this stream is known to yield the data of ``fingerprint``: its own, or one
        [`check_fit`][bayesguide.model.batches.BatchStream.check_fit] accepted (no pass over the data)."""
        return fingerprint == self.fingerprint or fingerprint in self._checked

    def check_fit(self, fingerprint: str, label: str) -> None:
        """Refuse this loader unless it holds the data a fit with ``fingerprint`` was trained on.

        A loader fit's fingerprint must equal this stream's; a fit on tensors is checked
        against [`content_fingerprint`][bayesguide.model.batches.BatchStream.content_fingerprint]
        (two passes over the data, once per stream: a fingerprint found to match is remembered).
        """
        if fingerprint in self._checked:
            return
        if fingerprint.startswith("batches:"):
            if fingerprint != self.fingerprint:
                raise ValueError(
                    f"this data loader is not the one {label} was trained on: fingerprint {self.fingerprint} != "
                    f"{fingerprint} (a loader is identified by n, its shapes and dtypes and its key); pass the "
                    f"training loader, or refit"
                )
            return
        own = self.content_fingerprint()
        if own != fingerprint:
            raise ValueError(
                f"the data loader does not yield the data {label} was trained on (in their order): fingerprint "
                f"{own} != {fingerprint}; pass a loader over the training data without shuffling, or the X, y "
                f"tensors"
            )
        self._checked.add(fingerprint)


def open_stream(X: Any, y: Any, net: nn.Module, likelihood: Likelihood, dtype: torch.dtype) -> BatchStream | None:
    """``X`` as a [`BatchStream`][bayesguide.model.batches.BatchStream] when it is a data loader, else ``None``.

    A ``BatchStream`` is returned as it is (it was validated when made, and it remembers
    the fits it was checked against, [`check_fit`][bayesguide.model.batches.BatchStream.check_fit]),
    so that a pipeline checks a loader once and passes the stream on; a ``DataLoader`` or
    [`Batches`][bayesguide.model.batches.Batches] is validated against ``net`` and
    ``likelihood`` (its first batch read). Errors as [`as_batches`][bayesguide.model.batches.as_batches].
    """
    if isinstance(X, BatchStream):
        if y is not None:
            raise ValueError("pass a data loader alone, without y: it yields (X, y) batches")
        return X
    source = as_batches(X, y)
    return None if source is None else BatchStream(source, net, likelihood, dtype)


def _pair(batch: Any, i: int) -> tuple[Any, Any]:
    """The ``(X, y)`` of one batch, or a ``ValueError`` naming the batch."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    what = f"a {type(batch).__name__}" + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
    raise ValueError(f"batch {i} of the data loader is {what}; every batch must be a pair (X, y)")


def _out_dim(net: nn.Module, x: torch.Tensor) -> int:
    """The number of outputs of ``net`` (a probe on two rows of a copy in eval mode, without gradients)."""
    probe = copy.deepcopy(net).to(x.device).eval()
    with torch.no_grad():
        return int(probe(x[:2]).shape[1])


def stream_metric(module: nn.Module, likelihood: Likelihood,
                  data: BatchStream | Batches | DataLoader[Any] | Iterable[tuple[torch.Tensor, torch.Tensor]],
                  device: torch.device | None = None) -> float:
    """The task metric (accuracy or RMSE) of ``module`` over batches of data, computed batch by batch.

    Parameters
    ----------
    module
        The network (a fit's or candidate's ``.module``; put in eval mode here).
    likelihood
        Says which metric ([`Likelihood.metric_sums`][bayesguide.likelihoods.Likelihood.metric_sums]).
    data
        A data loader (``DataLoader`` or [`Batches`][bayesguide.model.batches.Batches]),
        checked and prepared as for a fit; or an iterable of batches prepared already, such
        as a [`BatchStream`][bayesguide.model.batches.BatchStream].
    device
        Where the network runs (default: where its parameters are); each batch is moved there.

    Returns
    -------
    float
        The same number as [`Likelihood.metric`][bayesguide.likelihoods.Likelihood.metric] on all the
        data at once (up to rounding), from sums accumulated in float64.

    Examples
    --------
    >>> from torch.utils.data import TensorDataset
    >>> net = nn.Linear(2, 1)
    >>> X, y = torch.randn(10, 2), torch.randn(10)
    >>> rmse = stream_metric(net, Likelihood.GAUSSIAN, DataLoader(TensorDataset(X, y), batch_size=3))
    >>> abs(rmse - Likelihood.GAUSSIAN.metric(net(X).detach(), y.unsqueeze(1))) < 1e-6
    True
    """
    param = next(module.parameters())
    if is_batches(data) and not isinstance(data, BatchStream):
        data = BatchStream(as_batches(data, None) or Batches(data), module, likelihood, param.dtype)
    module = module.eval()
    device = param.device if device is None else device
    total, count = 0.0, 0
    with torch.no_grad():
        for xb, yb in data:
            s, c = likelihood.metric_sums(module(xb.to(device)), yb.to(device))
            total, count = total + s, count + c
    return likelihood.metric_from_sums(total, count)
