"""Model inversion (DeepInspect Eq. 1, after Fredrikson et al. 2015): substitute data from the model alone.

For every class ``t`` we optimise ``n_per_class`` images to minimise

    1 - f(x; t) + AuxInfo(x),      AuxInfo(x) = tv_weight * TV(x) + l2_weight * ||x - 0.5||_2^2 / D

where ``f(x; t)`` is the model's softmax confidence for ``t`` (the paper's objective), TV is the
anisotropic total variation (mean absolute difference of neighbouring pixels) and the L2 term keeps
pixels near mid-grey; the range [0, 1] is enforced by the parametrisation ``x = (tanh(w) + 1) / 2``.
All classes are optimised together in one batch. The model is reached only through
:meth:`Classifier.loss_and_input_grad` (the query-access seam).

**Optional rescue of saturated starts (our addition, off by default).** The gradient of Eq. 1's
``1 - f(x; t)`` is ``f (1 - f)`` times that of the logit margin: it vanishes where the model is confidently
wrong at the start (``f(x; t)`` near 0), and the image priors then steer the image alone. On the zoo's
LeNet-5, MLP and ResNet-8 Eq. 1 left 17-45 of 50 images below 0.5 on five of the six models, whose
substitutes then cover only 1-7 of the 10 classes. With ``rescue_below > 0``, images still below that
confidence after the ``steps`` of Eq. 1 are optimised ``steps`` more on the log-probability ``-log f(x; t)``:
the same optimum (``f = 1``), a gradient that does not vanish. Images Eq. 1 brought above the threshold are
untouched. It restores the substitutes of (nearly) every class, but DeepInspect's detection on those networks
did not improve overall (docs/methods/deep_inspect.md), so Eq. 1 alone stays the default.
``InversionResult.rescued`` counts the rescued images. With ``rescue_noise_std > 0`` the rescue sees its images
through Gaussian noise of that std at every step (a fresh draw per step, clipped to [0, 1]): it must make them their
class *under noise*, as natural images are, instead of pushing them just over a decision boundary that off-manifold
images of these networks sit next to. Images Eq. 1 brought above ``rescue_below`` are still untouched.

Optional prior ``jitter`` (default 0, off): at each step the whole batch is shifted by a random
``(dy, dx)`` in ``[-jitter, jitter]`` pixels (``torch.roll``) before it is shown to the model, the
"random jitter" image prior of feature visualisation (Mordvintsev et al. 2015): the images must be
recognised under small translations, which makes them less adversarial. Measured for DeepInspect in
docs/methods/deep_inspect.md (it is not its default).

Optional **batch-norm prior** ``bn_weight`` (default 0, off; after DeepInversion, Yin et al. 2020): a trained
network with batch normalisation carries, in each BN layer's running mean and variance, the per-channel statistics
its training images produced at that layer. The prior adds, per image, ``bn_weight`` times

    R_BN(x) = mean over BN layers l and their channels c of KL( N(mu_lc(x), s2_lc(x)) || N(m_lc, v_lc) )

where ``mu, s2`` are the batch's mean and variance of the layer's input over images and positions and ``m, v``
the layer's running statistics: the Gaussian KL divergence ``(log(v/s2) + (s2 + (mu - m)^2) / v - 1) / 2``. It is
scale-free (a layer's units do not matter), so one weight serves any network. The batch holds every class at once,
as the training data did. The layers are found by walking the autograd graph of the forward pass (the same walk as
the rectified saliency), so it works for ``nn.Module`` and TorchScript models alike; it needs white-box access
(refused for a query-only model) and does nothing on a network without batch norm, or whose BN was folded into
its convolutions (``InversionResult.bn_layers`` says how many layers it saw).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from trojanscan.data.base import Dataset
from trojanscan.errors import InvalidInputError
from trojanscan.models.classifier import Classifier


@dataclass(frozen=True)
class InversionResult:
    """Inverted images, their target labels, the final confidence per image and the throughput."""

    data: Dataset
    confidence: torch.Tensor  # (N,) softmax probability of the target class at the end
    images_per_second: float
    runtime_s: float
    rescued: int = 0  # images re-optimised with -log f after Eq. 1 left them below rescue_below
    bn_layers: int = 0  # batch-norm layers the bn_weight prior matched (0: prior off or no BN in the graph)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean anisotropic total variation per image, shape (N,)."""
    dh = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().flatten(1).mean(1)
    dw = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


def _bn_nodes(output: torch.Tensor) -> list[Any]:
    """The evaluation-mode batch-norm nodes of ``output``'s autograd graph (native, cuDNN or MIOpen kernels)."""
    from trojanscan.saliency import walk_graph

    found = []
    for node in walk_graph(output.grad_fn):
        if "BatchNorm" not in type(node).__name__ and "BatchNorm" not in getattr(node, "name", lambda: "")():
            continue
        try:
            inp, mean, var = node._saved_input, node._saved_running_mean, node._saved_running_var
        except (AttributeError, RuntimeError):
            continue
        if bool(getattr(node, "_saved_training", False)) or mean is None or var is None or inp.dim() < 2:
            continue
        found.append((inp, mean, var, float(getattr(node, "_saved_eps", 1e-5))))
    return found


def batchnorm_prior(output: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``R_BN`` of the module docstring for the batch that produced ``output`` (a scalar) and the layer count.

    The statistics are read from the autograd graph, so ``output`` must come from a forward pass with gradients.
    Returns ``(0, 0)`` when the graph holds no evaluation-mode batch norm.
    """
    if output.grad_fn is None:
        return output.new_zeros(()), 0
    terms = []
    for inp, m, v, eps in _bn_nodes(output):
        dims = [0, *range(2, inp.dim())]
        mu = inp.mean(dims)
        s2 = inp.var(dims, unbiased=False) + eps
        v = v.to(inp.dtype) + eps
        m = m.to(inp.dtype)
        terms.append((0.5 * (torch.log(v / s2) + (s2 + (mu - m) ** 2) / v - 1)).mean())
    if not terms:
        return output.new_zeros(()), 0
    return torch.stack(terms).mean(), len(terms)


def invert(
    model: Classifier,
    *,
    n_per_class: int = 5,
    steps: int = 300,
    lr: float = 0.1,
    tv_weight: float = 0.3,
    l2_weight: float = 0.05,
    seed: int = 0,
    progress: bool = False,
    jitter: int = 0,
    rescue_below: float = 0.0,
    rescue_noise_std: float = 0.0,
    bn_weight: float = 0.0,
) -> InversionResult:
    """Recover ``n_per_class`` substitute images per class (DeepInspect Eq. 1); see module docstring.

    ``images_per_second`` in the result is the throughput (recovered images per second of wall time).
    ``rescue_below``: images whose target confidence is still below it after Eq. 1 are optimised again on the
    log-probability (module docstring; 0, the default, is Eq. 1 alone). ``rescue_noise_std``: Gaussian noise of this
    std added to the images the model sees at every rescue step (module docstring; 0 = none). ``bn_weight``: weight
    of the batch-norm prior ``R_BN`` per image (module docstring; 0, the default, is off; white-box models only).
    """
    if not isinstance(rescue_below, int | float) or not 0 <= rescue_below < 1:
        raise InvalidInputError(f"rescue_below must be a number in [0, 1); got {rescue_below!r}")
    for name, v, lo in (("n_per_class", n_per_class, 1), ("steps", steps, 1), ("jitter", jitter, 0)):
        if not isinstance(v, int) or v < lo:
            raise InvalidInputError(f"{name} must be an int >= {lo}; got {v!r}")
    for name, f in (("lr", lr), ("tv_weight", tv_weight), ("l2_weight", l2_weight),
                    ("rescue_noise_std", rescue_noise_std), ("bn_weight", bn_weight)):
        if not isinstance(f, int | float) or not math.isfinite(f) or f < 0 or (name == "lr" and f == 0):
            raise InvalidInputError(f"{name} must be a {'positive' if name == 'lr' else 'non-negative'} number; got {f!r}")
    if bn_weight and not model.white_box:
        raise InvalidInputError("bn_weight needs the model's batch-norm layers; a query-only model has none to read")
    k = model.num_classes
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    targets = torch.arange(k).repeat_interleave(n_per_class)
    w = (torch.randn((k * n_per_class, *model.input_shape), generator=g) * 0.5).requires_grad_(True)
    layers = _optimise(model, w, targets, steps, lr, tv_weight, l2_weight, jitter, g, log_prob=False,
                       progress=progress, bn_weight=bn_weight)
    conf = _confidence(model, w, targets)
    low = torch.nonzero(conf < rescue_below).flatten()
    if low.numel():  # Eq. 1 left these confidently wrong: the same optimum through -log f (module docstring)
        w_low = w.detach()[low].clone().requires_grad_(True)
        _optimise(model, w_low, targets[low], steps, lr, tv_weight, l2_weight, jitter, g, log_prob=True,
                  progress=progress, noise_std=rescue_noise_std, bn_weight=bn_weight)
        with torch.no_grad():
            w[low] = w_low.detach()
        conf = _confidence(model, w, targets)
    x = _images(w)
    runtime = time.perf_counter() - t0
    data = Dataset(x.float(), targets.clone(), list(model.class_names), "model_inversion")
    return InversionResult(data, conf, float(x.shape[0] / max(runtime, 1e-9)), runtime, rescued=int(low.numel()),
                           bn_layers=layers)


@torch.no_grad()
def _images(w: torch.Tensor) -> torch.Tensor:
    """The images the parameters ``w`` stand for: ``(tanh(w) + 1) / 2`` in [0, 1]."""
    return ((torch.tanh(w) + 1) / 2).clamp(0, 1).contiguous()


@torch.no_grad()
def _confidence(model: Classifier, w: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.softmax(model(_images(w)), 1).gather(1, targets[:, None]).squeeze(1)


def _optimise(model: Classifier, w: torch.Tensor, targets: torch.Tensor, steps: int, lr: float, tv_weight: float,
              l2_weight: float, jitter: int, g: torch.Generator, *, log_prob: bool, progress: bool,
              noise_std: float = 0.0, bn_weight: float = 0.0) -> int:
    """Adam on ``w`` (images ``(tanh(w) + 1) / 2``): Eq. 1's ``1 - f(x; t)``, or ``-log f(x; t)``, plus AuxInfo.

    Returns how many batch-norm layers the ``bn_weight`` prior matched (0 when it is off).
    """
    opt = torch.optim.Adam([w], lr=lr)

    def objective(logits: torch.Tensor) -> torch.Tensor:
        if log_prob:
            return -torch.log_softmax(logits, 1).gather(1, targets[:, None]).sum()
        p = torch.softmax(logits, 1).gather(1, targets[:, None]).squeeze(1)
        return (1.0 - p).sum()

    desc = "model inversion (rescue)" if log_prob else "model inversion"
    layers = 0
    for _ in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        opt.zero_grad(set_to_none=True)
        x = (torch.tanh(w) + 1) / 2
        xq = x
        if jitter:
            dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=g))
            xq = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        if noise_std:
            xq = (xq + noise_std * torch.randn(xq.shape, generator=g)).clamp(0, 1)
        if bn_weight:
            gx, layers = _grad_with_bn_prior(model, xq, objective, bn_weight)
        else:
            _, gx = model.loss_and_input_grad(xq, objective)
        aux = (tv_weight * total_variation(x) + l2_weight * ((x - 0.5) ** 2).flatten(1).mean(1)).sum()
        (xq * gx).sum().add(aux).backward()
        opt.step()
    return layers


def _grad_with_bn_prior(model: Classifier, x: torch.Tensor, objective: Callable[[torch.Tensor], torch.Tensor],
                        bn_weight: float) -> tuple[torch.Tensor, int]:
    """Gradient w.r.t. ``x`` of ``objective(logits) + bn_weight * N * R_BN`` (white-box; module docstring)."""
    from trojanscan.saliency import jit_optimization_disabled

    xi = x.detach().requires_grad_(True)
    with torch.enable_grad(), jit_optimization_disabled():
        logits = model(xi)
        prior, layers = batchnorm_prior(logits)
        loss = objective(logits) + bn_weight * xi.shape[0] * prior
        (grad,) = torch.autograd.grad(loss, xi)
    return grad, layers
