"""The model: ``GuidedModel``, a Pyro model around an ordinary network, and its data.

* [`guided`][bayesguide.model.guided] — [`GuidedModel`][bayesguide.GuidedModel]: the guided priors on the units
  of every prunable layer, the likelihood, the log prior and log joint written once in
  plain torch, and the Pyro model;
* [`data`][bayesguide.model.data] — validating training data against a model
  (``GuidedModel.prepare_data``) and the data fingerprint later stages check;
* [`fold`][bayesguide.model.fold] — ``BatchNorm`` folded into the layer before it, the
  network the Laplace evidence and posterior score;
* [`penalty`][bayesguide.model.penalty] — the prior's terms of the MAP step from the
  network's own tensors, set up once per fit ([`PriorTerms`][bayesguide.model.penalty.PriorTerms]);
* [`counterpart`][bayesguide.model.counterpart] — the model MAP steps use when the prior
  has no MAP (L0 gates, the group horseshoe): its Gaussian counterpart;
* [`device`][bayesguide.model.device] — ``device=``: resolving it
([`resolve_device`][bayesguide.model.device.resolve_device])
  and the rules for moving networks and data to it.

Layer: above [`bayesguide.priors`][], below [`bayesguide.curvature`][].
"""

from __future__ import annotations

from bayesguide.model.counterpart import map_model
from bayesguide.model.data import ArrayLike, data_fingerprint
from bayesguide.model.device import available_devices, resolve_device
from bayesguide.model.fold import fold_batchnorm, has_batchnorm
from bayesguide.model.guided import GuidedModel

__all__ = [
    "ArrayLike", "GuidedModel", "available_devices", "data_fingerprint", "fold_batchnorm", "has_batchnorm",
    "map_model", "resolve_device",
]
