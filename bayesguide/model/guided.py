"""``GuidedModel``: a Pyro model around an ordinary ``nn.Sequential`` network.

The joint density is

$$
\\log p(y, θ \\mid X) = \\sum_{i=1}^{N} \\log p(y_i \\mid f(x_i; θ))
    + \\sum_{l \\text{ prunable}} \\log p_{\\text{guided}}(Θ_l)
    + \\sum_{l \\text{ other}} \\log p_{\\text{plain}}(Θ_l),
$$

with ``Θ_l`` the ``(n_l, p_l)`` unit matrix of layer ``l`` (see
[`bayesguide.network`][]). Prunable layers (every ``Linear`` / ``Conv2d`` but the
output layer) get the guided unit prior; the output layer and ``BatchNorm`` affine
parameters get ``plain_prior`` (default: plain L2, ``GuidedNormal`` with the same
strength and uniform guidance, i.e. ordinary weight decay). The negative log joint is
therefore "summed NLL + guided penalty + plain penalty + const": MAP training of this
model *is* guided regularization.

Minibatches go through ``pyro.plate("data", N, subsample=idx)``, which scales the
likelihood by ``N / B``.

The log joint is written once, in plain torch ([`GuidedModel.log_prior`][bayesguide.model.guided.GuidedModel.log_prior],
[`GuidedModel.log_joint`][bayesguide.model.guided.GuidedModel.log_joint]); the fitters, the diagnostics and the evidence
estimators all use it, and tests check it against Pyro's trace of
[`GuidedModel.model`][bayesguide.model.guided.GuidedModel.model].

Third layer of the data flow: it imports the guidance, the priors and the foundation
modules (network, likelihoods).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch import nn

from bayesguide.guidance import coefficients_for_layer, uniform, validate_coefficients
from bayesguide.likelihoods import Likelihood
from bayesguide.model.data import ArrayLike, check_dtype, prepare_data
from bayesguide.model.device import CPU, module_device
from bayesguide.model.penalty import PriorTerms
from bayesguide.network import Layer, Site, functional_forward, parse_network
from bayesguide.priors import GuidedNormal, HierarchicalUnitPrior, LatentSite, UnitGroupDistribution, UnitPrior

__all__ = ["GuidedModel"]

class GuidedModel:
    """A Pyro model whose priors carry guidance coefficients.

    Parameters
    ----------
    net
        An ``nn.Sequential`` of ``Linear``, ``Conv2d``, ``BatchNorm1d/2d``, ``Flatten``,
        ``Dropout`` and elementwise activations, or one bare ``Linear`` / ``Conv2d``
        (Bayesian linear or logistic regression; it has no prunable layer). Parameters
        must be float32 or float64. It is used as a template: fits work on copies and
        never change it. Its device is where fits run by default (``device=None``); the
        priors are evaluated on the device of the weights they are given (cached per
        device, [`site_distribution`][bayesguide.model.guided.GuidedModel.site_distribution]), see
        [`bayesguide.model.device`][].
    prior
        The guided unit prior of the prunable layers, e.g.
        ``bg.GuidedLaplace(strength=1e-4, guidance=bg.guidance.linear())``.
    likelihood
        ``"categorical"``, ``"gaussian"`` or ``"bernoulli"``.
    noise
        For ``"gaussian"``: a fixed noise standard deviation ``σ``, or ``None`` to learn
        it (a point estimate under a flat prior on ``σ > 0``). Not allowed otherwise.
    plain_prior
        Prior of the non-prunable parameters (output layer, BatchNorm). Default:
        ``GuidedNormal(prior.strength, guidance.uniform())``.

    Raises
    ------
    TypeError
        For a network that is neither an ``nn.Sequential`` nor a single ``Linear`` /
        ``Conv2d``, with an unsupported layer, or whose parameters are not all float32
        or all float64 (``net.float()`` / ``net.double()`` converts it).
    ValueError
        For a module instance used at two positions, a layer with zero units or inputs
        (see [`bayesguide.network.parse_network`][]), or inconsistent settings.

    Examples
    --------
    >>> import torch, bayesguide as bg
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> model = bg.GuidedModel(net, bg.GuidedLaplace(strength=1e-3), likelihood="categorical")
    >>> [s.name for s in model.prunable_sites]
    ['0.units']
    """

    def __init__(
        self,
        net: nn.Module,
        prior: UnitPrior,
        likelihood: str | Likelihood = "categorical",
        *,
        noise: float | None = None,
        plain_prior: UnitPrior | None = None,
    ) -> None:
        if not isinstance(prior, UnitPrior):
            raise TypeError(
                f"prior must be a unit prior such as bg.GuidedLaplace, bg.GuidedNormal or "
                f"bg.GuidedGroupLasso, got {type(prior).__name__}"
            )
        if plain_prior is not None and not isinstance(plain_prior, UnitPrior):
            raise TypeError(
                f"plain_prior must be a unit prior such as bg.GuidedNormal, got {type(plain_prior).__name__}"
            )
        self.likelihood = Likelihood.resolve(likelihood, "likelihood")
        if noise is not None:
            if self.likelihood is not Likelihood.GAUSSIAN:
                raise ValueError(
                    f"noise is only used by the gaussian likelihood, not {self.likelihood.value!r}"
                )
            real = isinstance(noise, numbers.Real) and not isinstance(noise, bool)
            if not (real and math.isfinite(noise) and noise > 0):
                raise ValueError(f"noise must be a positive finite standard deviation or None, got {noise!r}")
        self.noise = None if noise is None else float(noise)
        self.net = net
        self.prior = prior
        self.plain_prior = plain_prior if plain_prior is not None else GuidedNormal(prior.strength, uniform())
        self.layers: list[Layer]
        self.sites: list[Site]
        self.layers, self.sites = parse_network(net)
        check_dtype(net)
        self._set_coefficients({
            site.name: coefficients_for_layer(self.family(site).guidance, site.layer.name, site.n_units)
            for site in self.sites
        })

    def _set_coefficients(self, coefficients: Mapping[str, torch.Tensor]) -> None:
        """Set every site's coefficients; reset the distribution cache and the latent sites."""
        self.coefficients: dict[str, torch.Tensor] = dict(coefficients)
        self._dist_cache: dict[tuple[str, torch.dtype, torch.device], UnitGroupDistribution] = {}
        self._priors_cache: dict[tuple[torch.dtype, torch.device], list[tuple[Site, UnitGroupDistribution]]] = {}
        self._latent_cache: dict[torch.device, dict[str, dist.TorchDistribution]] = {}
        self.latent_sites: list[LatentSite] = []
        for site in self.sites:
            family = self.family(site)
            if isinstance(family, HierarchicalUnitPrior):
                g = self.coefficients[site.name].to(self.dtype)
                self.latent_sites += [
                    LatentSite(f"{site.name}.{local}", local, site.name, d, tuple(d.event_shape))
                    for local, d in family.latent_priors(g).items()
                ]

    def with_coefficients(self, coefficients: Mapping[str, torch.Tensor]) -> GuidedModel:
        """A new model on the same network, priors and likelihood with other guidance coefficients.

        ``coefficients`` maps site names (``"0.units"``) to ``(n_units,)`` tensors; sites not
        named keep theirs. Used for coefficients estimated from data (relevance guidance)
        and restored from disk; this model is not changed.
        """
        new = GuidedModel(self.net, self.prior, self.likelihood, noise=self.noise, plain_prior=self.plain_prior)
        sites = {s.name: s for s in self.sites}
        merged = {k: v.clone() for k, v in self.coefficients.items()}
        for name, g in coefficients.items():
            if name not in sites:
                raise ValueError(f"no site {name!r} in this model; sites: {sorted(sites)}")
            merged[name] = validate_coefficients(g.detach().clone(), sites[name].n_units, f"site {name!r}")
        new._set_coefficients(merged)
        return new

    def with_network(self, net: nn.Module) -> GuidedModel:
        """The same model (priors, coefficients, likelihood) around ``net``, a network of the same structure."""
        new = GuidedModel(net, self.prior, self.likelihood, noise=self.noise, plain_prior=self.plain_prior)
        if [s.shapes for s in new.sites] != [s.shapes for s in self.sites]:
            raise ValueError("with_network needs a network with the same layers and shapes")
        new._set_coefficients({k: v.clone() for k, v in self.coefficients.items()})
        return new

    def family(self, site: Site) -> UnitPrior:
        """The prior family of ``site``: `prior` when prunable, else `plain_prior`."""
        return self.prior if site.prunable else self.plain_prior

    # ------------------------------------------------------------------ structure

    @property
    def prunable_sites(self) -> list[Site]:
        """Sites of the hidden ``Linear`` / ``Conv2d`` layers, in layer order."""
        return [s for s in self.sites if s.prunable]

    @property
    def learns_noise(self) -> bool:
        """Whether the Gaussian noise ``σ`` is a parameter of the fit."""
        return self.likelihood is Likelihood.GAUSSIAN and self.noise is None

    @property
    def dtype(self) -> torch.dtype:
        return next(self.net.parameters()).dtype

    def site_distribution(
        self,
        site: Site,
        dtype: torch.dtype | None = None,
        latents: Mapping[str, torch.Tensor] | None = None,
        device: torch.device | None = None,
    ) -> UnitGroupDistribution:
        """The prior over ``site``'s ``(n, p)`` unit matrix (cached per dtype and device).

        ``device`` is where its rates live (default: the CPU): the distribution is built on
        the CPU and a copy moved there ([`to`][bayesguide.priors.base.UnitGroupDistribution.to]),
        so its normalising constant is the same on every device.

        For a hierarchical prior ([`GroupHorseshoe`][bayesguide.GroupHorseshoe]) this is the
        conditional prior given the latent values ``latents`` (keyed by Pyro site name,
        as in `latent_sites`), which are then required; it is not cached and lives
        on the latents' device.
        """
        dtype = self.dtype if dtype is None else dtype
        device = CPU if device is None else torch.device(device)
        family = self.family(site)
        if isinstance(family, HierarchicalUnitPrior):
            own = [lat for lat in self.latent_sites if lat.site == site.name]
            if latents is None or any(lat.name not in latents for lat in own):
                raise ValueError(
                    f"site {site.name!r} has a hierarchical prior ({type(family).__name__}): pass the "
                    f"values of its latent sites {[lat.name for lat in own]}"
                )
            g = self.coefficients[site.name].to(dtype)
            values = {lat.local: latents[lat.name] for lat in own}
            if own:
                g = g.to(values[own[0].local].device)
            return family.unit_distribution_given(values, g, site.group_size)
        key = (site.name, dtype, device)
        if key not in self._dist_cache:
            if device == CPU:
                g = self.coefficients[site.name].to(dtype)
                self._dist_cache[key] = family.unit_distribution(g, site.group_size)
            else:
                self._dist_cache[key] = self.site_distribution(site, dtype).to(device)
        return self._dist_cache[key]

    def set_site_rate(self, site: Site, rate: torch.Tensor) -> None:
        """Write new per-unit rates ``λ g_j`` into every cached prior of ``site`` (every dtype and device).

        The in-place update of empirical-Bayes guidance
        ([`set_rate`][bayesguide.priors.base.UnitGroupDistribution.set_rate]): objectives that
        hold a prior see the new rates, whichever device they run on.
        """
        for (name, _, _), prior in self._dist_cache.items():
            if name == site.name:
                prior.set_rate(rate)

    def latent_priors(self, device: torch.device | None = None) -> dict[str, dist.TorchDistribution]:
        """The priors of the latent sites by name, with their parameters on ``device`` (default: the CPU)."""
        device = CPU if device is None else torch.device(device)
        if device == CPU:
            return {lat.name: lat.prior for lat in self.latent_sites}
        if device not in self._latent_cache:
            out: dict[str, dist.TorchDistribution] = {}
            for site in self.sites:
                family = self.family(site)
                if isinstance(family, HierarchicalUnitPrior):
                    g = self.coefficients[site.name].to(self.dtype).to(device)
                    priors = family.latent_priors(g)
                    out.update({lat.name: priors[lat.local] for lat in self.latent_sites if lat.site == site.name})
            self._latent_cache[device] = out
        return self._latent_cache[device]

    def latent_log_prob(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``Σ log p(z)`` over the latent sites (0 when the priors have none), on the values' device."""
        total = torch.zeros((), dtype=self.dtype)
        if not self.latent_sites:
            return total
        priors = self.latent_priors(values[self.latent_sites[0].name].device)
        for lat in self.latent_sites:
            total = total + priors[lat.name].log_prob(values[lat.name])
        return total

    def chain(self, module: nn.Module) -> list[Layer]:
        """``module``'s layers in this model's structure (``module`` is a copy of ``net``)."""
        named = dict(module.named_modules())
        return [Layer(ly.name, ly.position, named[ly.name]) for ly in self.layers]

    def unit_norms(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """Euclidean norm of every unit group of every prunable layer of ``module``."""
        return self.unit_norm_recorder(module)()

    def unit_norm_recorder(self, module: nn.Module) -> Callable[[], dict[str, torch.Tensor]]:
        """`unit_norms` of ``module`` as a function of no arguments, its parameters looked up once.

        What a training loop records while it steps ``module``'s parameters in place.
        """
        params = dict(module.named_parameters())
        sites = [(s.layer.name, s) for s in self.prunable_sites]

        def record() -> dict[str, torch.Tensor]:
            with torch.no_grad():
                return {name: s.unit_norms(params) for name, s in sites}

        return record

    # ------------------------------------------------------------------ data

    def prepare_data(self, X: ArrayLike, y: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate ``X`` and ``y`` against this model and return them as tensors.

        Checks, before any training ([`bayesguide.model.data.prepare_data`][]): real (not
        complex) numbers, equal lengths, at least one row and one feature, no NaN or inf,
        no value that overflows the network's dtype (checked before the cast), that ``X``
        fits the network's input, and the targets the likelihood needs (integer labels in
        range for ``categorical``, 0/1 for ``bernoulli``, matching shape for
        ``gaussian``). The number of classes present is *not* checked: a test set or a
        validation subset may legitimately hold a single class; training data files are
        checked for that by [`bayesguide.datasets.load_file`][].
        """
        return prepare_data(self.net, self.likelihood, self.dtype, X, y)

    # ------------------------------------------------------------------ densities

    def site_log_prior(self, site: Site, values: Mapping[str, torch.Tensor],
                       dtype: torch.dtype | None = None) -> torch.Tensor:
        """``log p(Θ_s)`` of one site (given the latent values for a hierarchical prior).

        ``log_normaliser − penalty``: ``log_prob`` without the support check, so a NaN
        reaches the caller's guard. Leading batch dimensions of ``values[site.name]``
        are kept (for a hierarchical prior the latent values must then be unbatched).
        """
        prior = self.site_distribution(site, dtype, values, values[site.name].device)
        return prior.log_normaliser - prior.penalty(values[site.name])

    def log_prior(self, values: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None) -> torch.Tensor:
        """``log p(θ)`` for site values ``θ`` (the joint ``log p(z) + log p(θ | z)`` with latent sites).

        ``values`` holds every site's ``(..., n, p)`` unit matrix (and, for a
        hierarchical prior, every latent site's value); leading batch dimensions (posterior
        draws) give a log prior per draw.
        """
        dtype = self.dtype if dtype is None else dtype
        if self.latent_sites:
            first = self.latent_sites[0]
            lead = values[first.name].shape[: values[first.name].ndim - len(first.shape)]
            if len(lead):  # one conditional prior per draw
                flat = {k: v.reshape(-1, *v.shape[len(lead):]) for k, v in values.items()}
                per = [self.log_prior({k: v[i] for k, v in flat.items()}, dtype) for i in range(lead.numel())]
                return torch.stack(per).reshape(lead)
        total = self.latent_log_prob(values).to(dtype) if self.latent_sites else torch.zeros((), dtype=dtype)
        for site in self.sites:
            total = total + self.site_log_prior(site, values, dtype)
        return total

    def neg_log_prior_blocks(self, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``−log p(θ)`` from the network's own parameter tensors (no hierarchical priors).

        The same value as ``-log_prior(values)``, computed from each layer's weight and
        bias tensors ([`penalty_parts`][bayesguide.priors.base.UnitGroupDistribution.penalty_parts])
        instead of the packed unit matrices, so the MAP hot path copies nothing. Rates
        and normalisers are read at every call, so in-place updates
        ([`set_rate`][bayesguide.priors.base.UnitGroupDistribution.set_rate]) are seen.
        """
        penalty, log_norm = self.prior_terms(params)
        return penalty - log_norm

    def prior_terms(self, params: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The prior's penalty and log normaliser at the network's parameters.

        Parameters
        ----------
        params
            The network's named parameters (``dict(module.named_parameters())``).

        Returns
        -------
        tuple of torch.Tensor
            ``(penalty, log_normaliser)``: the penalty is the regulariser
            ``Σ_sites Σ_j rate_j s(θ_j)``, the prior's negative log-density without its
            constants, and ``−log p(θ) = penalty − log_normaliser`` (the value of
            `neg_log_prior_blocks`, from the same per-layer tensors). A training loop
            that calls this at every step sets it up once with `prior_terms_function`.
        """
        return self.prior_terms_function(params)()

    def prior_terms_function(self, params: Mapping[str, torch.Tensor]) -> PriorTerms:
        """`prior_terms` at ``params`` as a function of no arguments, set up once for a training loop.

        Each call reads the parameters (stepped in place), the priors' rates and their
        normalisers (in-place updates by [`set_site_rate`][bayesguide.model.guided.GuidedModel.set_site_rate] are seen);
        see [`bayesguide.model.penalty`][].
        """
        first = params[self.sites[0].param_names[0]]
        return PriorTerms(self.site_priors(first.dtype, first.device), params)

    def site_priors(self, dtype: torch.dtype, device: torch.device) -> list[tuple[Site, UnitGroupDistribution]]:
        """Every site with its prior (`site_distribution`), looked up once per dtype and device.

        The MAP objective reads the priors at every step; the distributions are the cached
        ones, so in-place rate updates (`set_site_rate`) are seen.
        """
        key = (dtype, device)
        priors = self._priors_cache.get(key)
        if priors is None:
            priors = self._priors_cache[key] = [
                (site, self.site_distribution(site, dtype, device=device)) for site in self.sites]
        return priors

    def log_joint(
        self,
        chain: list[Layer],
        values: Mapping[str, torch.Tensor],
        X: torch.Tensor,
        y: torch.Tensor,
        *,
        scale: float = 1.0,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale · Σ log p(y | X, θ), log p(θ))`` for site values ``θ``, in plain torch.

        This is the Pyro model's log joint written without Pyro's tracing (tests check
        that the two agree); ``scale`` is ``N / B`` for a minibatch. With a hierarchical
        prior, ``values`` also holds the latent sites' values and ``log p(θ)`` is the
        joint ``log p(z) + log p(θ | z)``.
        """
        out = functional_forward(chain, self.sites, values, X)
        loglik = self.likelihood.log_prob_sum(out, y, self.noise_tensor(noise, X.dtype))
        return loglik * scale, self.log_prior(values, X.dtype)

    def noise_tensor(self, noise: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
        """The Gaussian ``σ`` to use: the fixed one, else ``noise`` (``None`` if not Gaussian)."""
        if self.likelihood is not Likelihood.GAUSSIAN:
            return None
        if self.noise is not None:
            return torch.tensor(self.noise, dtype=dtype)
        if noise is None:
            raise ValueError("this model learns the noise σ: pass its current value")
        return noise

    def model(
        self,
        X: torch.Tensor,
        y: torch.Tensor | None = None,
        subsample: torch.Tensor | None = None,
        module: nn.Module | None = None,
    ) -> torch.Tensor:
        """The Pyro model: samples every site, then observes ``y`` in a data plate.

        Parameters
        ----------
        X
            Inputs.
        y
            (Prepared) targets; ``None`` samples the targets.
        subsample
            Indices of a minibatch; the plate scales its log-likelihood by ``N / B``.
        module
            The copy of ``net`` whose buffers and train/eval mode are used (default
            ``net`` itself). The priors live on its device, and each (mini)batch of
            ``X, y`` is moved there (the data themselves may stay on the CPU).
        """
        module = self.net if module is None else module
        chain = self.chain(module)
        device = module_device(module)
        latent_priors = self.latent_priors(device) if self.latent_sites else {}
        values: dict[str, torch.Tensor] = {}
        for site in self.sites:
            for lat in self.latent_sites:  # latent scales first (hierarchical priors only)
                if lat.site == site.name:
                    values[lat.name] = pyro.sample(lat.name, latent_priors[lat.name])
            values[site.name] = pyro.sample(site.name, self.site_distribution(site, X.dtype, values, device))
        noise: torch.Tensor | None
        if self.learns_noise:
            noise = pyro.sample("noise", dist.ImproperUniform(constraints.positive, (), ()))
        else:
            noise = self.noise_tensor(None, X.dtype)
        with pyro.plate("data", X.shape[0], subsample=subsample) as idx:
            out = functional_forward(chain, self.sites, values, X[idx].to(device, non_blocking=True))
            obs = None if y is None else y[idx].to(device, non_blocking=True)
            pyro.sample("obs", self.likelihood.distribution(out, noise), obs=obs)
        return out

    __call__ = model

    def __repr__(self) -> str:
        widths = [s.n_units for s in self.prunable_sites]
        return (
            f"GuidedModel(prunable widths={widths}, prior={self.prior}, "
            f"likelihood={self.likelihood.value!r})"
        )
