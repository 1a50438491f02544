"""Built-in data: nothing is downloaded at run time.

* :func:`digits` — scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10
  classes), pixels scaled to ``[0, 1]``.
* :func:`teacher_student` — regression data from a random one-hidden-layer ``tanh``
  teacher whose width is known: the test of whether selection finds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Dataset", "digits", "teacher_student"]


@dataclass(frozen=True)
class Dataset:
    """A train/test split. ``task`` is ``"classification"`` or ``"regression"``."""

    name: str
    task: str
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def n_features(self) -> int:
        return int(self.X_train[0].numel())

    @property
    def n_outputs(self) -> int:
        if self.task == "classification":
            return int(max(self.y_train.max(), self.y_test.max())) + 1
        return 1 if self.y_train.ndim == 1 else int(self.y_train.shape[1])

    def __str__(self) -> str:
        return (
            f"{self.name}: {self.task}, {self.X_train.shape[0]} train / {self.X_test.shape[0]} test, "
            f"{self.n_features} features, {self.n_outputs} outputs"
        )


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = round(n * test_fraction)
    return perm[n_test:], perm[:n_test]


def digits(
    test_fraction: float = 0.25, seed: int = 0, dtype: torch.dtype = torch.float32, image: bool = False
) -> Dataset:
    """scikit-learn's bundled handwritten digits, pixels scaled to ``[0, 1]``.

    Parameters
    ----------
    image
        ``True`` gives inputs of shape ``(N, 1, 8, 8)`` for CNNs, else ``(N, 64)``.

    Examples
    --------
    >>> data = digits()
    >>> tuple(data.X_train.shape), data.n_outputs
    ((1348, 64), 10)
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    if image:
        X = X.reshape(-1, 1, 8, 8)
    train, test = _split(len(y), test_fraction, seed)
    Xt, yt = torch.as_tensor(X, dtype=dtype), torch.as_tensor(y, dtype=torch.int64)
    return Dataset("digits", "classification", Xt[train], yt[train], Xt[test], yt[test])


def teacher_student(
    n: int = 600,
    n_features: int = 5,
    width: int = 4,
    noise: float = 0.1,
    test_fraction: float = 0.25,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Dataset:
    """Regression data ``y = tanh(x W₁ᵀ + b₁) w₂ + ε`` from a teacher of ``width`` units.

    Inputs are standard normal; the teacher's weights are standard normal (output
    weights at least 0.5 in magnitude, so no unit is negligible); ``ε ~ N(0, noise²)``.

    Examples
    --------
    >>> data = teacher_student(n=100, width=3)
    >>> tuple(data.X_train.shape)
    (75, 5)
    """
    for name, value in (("n", n), ("n_features", n_features), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((width, n_features))
    b1 = 0.5 * rng.standard_normal(width)
    w2 = rng.choice([-1.0, 1.0], width) * rng.uniform(0.5, 1.5, width)
    X = rng.standard_normal((n, n_features))
    y = np.tanh(X @ w1.T + b1) @ w2 + noise * rng.standard_normal(n)
    train, test = _split(n, test_fraction, seed + 1)
    Xt, yt = torch.as_tensor(X, dtype=dtype), torch.as_tensor(y, dtype=dtype)
    return Dataset(f"teacher(width={width})", "regression", Xt[train], yt[train], Xt[test], yt[test])
