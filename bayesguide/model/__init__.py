"""The model: ``GuidedModel``, a Pyro model around an ordinary network, and its data.

* :mod:`~bayesguide.model.guided` — :class:`GuidedModel`: the guided priors on the units
  of every prunable layer, the likelihood, the log prior and log joint written once in
  plain torch, and the Pyro model;
* :mod:`~bayesguide.model.data` — validating training data against a model
  (``GuidedModel.prepare_data``) and the data fingerprint later stages check;
* :mod:`~bayesguide.model.fold` — ``BatchNorm`` folded into the layer before it, the
  network the Laplace evidence and posterior score;
* :mod:`~bayesguide.model.device` — ``device=``: resolving it (:func:`resolve_device`)
  and the rules for moving networks and data to it.

Layer: above :mod:`bayesguide.priors`, below :mod:`bayesguide.curvature`.
"""

from __future__ import annotations

from bayesguide.model.data import ArrayLike, data_fingerprint
from bayesguide.model.device import available_devices, resolve_device
from bayesguide.model.fold import fold_batchnorm, has_batchnorm
from bayesguide.model.guided import GuidedModel

__all__ = [
    "ArrayLike", "GuidedModel", "available_devices", "data_fingerprint", "fold_batchnorm", "has_batchnorm",
    "resolve_device",
]
