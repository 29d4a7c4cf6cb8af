"""Query-only models: the second kind of access of DESIGN.md §3 ("Classifier").

DeepInspect's threat model (§3.2 of the paper) gives the defender "the dimensionality of the input data, the number
of output classes, and the confidence scores of the model given an arbitrary input query", and the paper argues
that DeepInspect "is operational in a black-box setting since our trigger recovery process does not need any
information about model internals". A :class:`QueryClassifier` is exactly that: a function from images to scores
(an ONNX file run by onnxruntime, a remote prediction endpoint, any callable), with no gradients and no weights.

**The seam.** Model inversion (Eq. 1), DeepInspect's generator training (Eqs. 3–6) and Neural Cleanse's reverse
engineering reach the model only through :meth:`Classifier.loss_and_input_grad`: a loss of the logits and its
gradient w.r.t. the input. Here that gradient is **estimated from queries**. The loss is ours (differentiable), only
the network is a black box, so by the chain rule ``dL/dx_i = J_i(x_i)^T g_i`` with ``g_i = dL/dz_i`` the loss's
gradient w.r.t. image ``i``'s logits (autograd on the loss alone). The vector-Jacobian product is estimated per image
with antithetic Gaussian smoothing (NES; Wierstra et al. 2014, as used for black-box attacks by Ilyas et al. 2018):

    J_i^T g_i  ≈  1 / (2 σ q) · Σ_j  g_i · ( f(x_i + σ u_j) − f(x_i − σ u_j) ) · u_j,      u_j ~ N(0, I),

``q`` = ``samples`` direction pairs, unbiased for the gradient of the σ-smoothed network. One call on ``N`` images
costs ``N · (1 + 2q)`` queries (the scores at ``x``, then the ``2q`` probes). The probes are not clipped to [0, 1]:
a point ``x ± σu`` may leave the pixel range by a few σ (a network takes any float; an endpoint that quantises its
input to 8 bits needs ``sigma`` of several 1/255). The directions come from torch's global RNG, which
:meth:`Detector.scan` seeds from the scan's seed, so a scan is reproducible.

**Budget.** Every image that reaches the black box is counted (``queries``, the report's ``model_queries``),
probes included; with ``max_queries`` set, a call that would pass it raises :class:`QueryBudgetError` before the
black box is called, so a metered endpoint is never asked for more than the budget.

Methods that need gradients *through* the network (NeuronInspect's rectified saliency) or its weights (patching)
refuse a query-only model with :class:`~trojanscan.errors.WhiteBoxRequiredError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from trojanscan.errors import InvalidInputError, QueryBudgetError
from trojanscan.models.classifier import Classifier, scores_of
from trojanscan.types import ImageBatch, Shape3

#: ``f(images) -> scores``: float32 ``(N, C, H, W)`` (already normalised by the wrapper) to ``(N, K)`` scores.
PredictFn = Callable[[np.ndarray], np.ndarray]

DEFAULT_SAMPLES = 20
DEFAULT_SIGMA = 0.01
#: At most this many probe values (images x pixels) are held at once by one gradient estimate (128 MiB of float32).
PROBE_VALUES = 1 << 25


class BlackBox(nn.Module):
    """Holds the predict function so that the wrapper is an ordinary (parameter-free) module."""

    def __init__(self, predict_fn: PredictFn) -> None:
        super().__init__()
        self.predict_fn = predict_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        out = self.predict_fn(a)
        if isinstance(out, torch.Tensor):
            out = out.detach().cpu().numpy()
        arr = np.asarray(out)
        if arr.dtype.kind not in "fiu":
            raise InvalidInputError(f"the query-only model returned {arr.dtype} scores; it must return numbers (N, K)")
        return torch.from_numpy(np.array(arr, dtype=np.float32, copy=True))


class QueryClassifier(Classifier):
    """A classifier known only by its scores (module docstring): same contract as :class:`Classifier`.

    Parameters
    ----------
    predict_fn:
        ``f(images) -> scores``: float32 ``(N, C, H, W)`` after the wrapper's normalisation, to ``(N, num_classes)``
        logits, probabilities or log-probabilities (``outputs``). It must accept any batch size.
    input_shape, num_classes, mean, std, class_names, metadata, outputs:
        As for :class:`Classifier`.
    samples:
        Direction pairs ``q`` per gradient estimate (each costs 2 queries per image).
    sigma:
        Smoothing radius ``σ`` of the estimate, in [0, 1] pixel units.
    max_queries:
        Budget of images sent to the model over this object's life (None: unlimited).
    batch_size:
        Images per call of ``predict_fn``.
    """

    white_box = False

    def __init__(
        self,
        predict_fn: PredictFn,
        input_shape: Shape3,
        num_classes: int,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        class_names: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
        outputs: str = "logits",
        samples: int = DEFAULT_SAMPLES,
        sigma: float = DEFAULT_SIGMA,
        max_queries: int | None = None,
        batch_size: int = 2048,
    ) -> None:
        if not callable(predict_fn):
            raise InvalidInputError(f"predict_fn must be callable (images -> scores); got {type(predict_fn).__name__}")
        check_query_settings(samples, sigma, max_queries)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InvalidInputError(f"batch_size must be an int >= 1; got {batch_size!r}")
        super().__init__(BlackBox(predict_fn), input_shape, num_classes, mean=mean, std=std,
                         class_names=class_names, metadata=metadata, outputs=outputs)
        self.samples = int(samples)
        self.sigma = float(sigma)
        self.max_queries = None if max_queries is None else int(max_queries)
        self.batch_size = batch_size
        self.metadata["access"] = "query-only"
        self.metadata["query"] = {"estimator": "nes", "samples": self.samples, "sigma": self.sigma}

    def raw_output(self, x: ImageBatch) -> torch.Tensor:
        """The black box's scores for ``x`` in [0, 1]; every image counts as a query (module docstring, "Budget")."""
        n = int(x.shape[0])
        if self.max_queries is not None and self.queries + n > self.max_queries:
            raise QueryBudgetError(
                f"the model's query budget (max_queries={self.max_queries}) would be exceeded: {self.queries} queries "
                f"made, {n} more asked. Raise --max-queries, or lower the method's steps or --query-samples "
                f"(one gradient estimate costs 1 + 2 x {self.samples} queries per image).")
        self.queries += n
        xn = (x.detach().cpu() - self.mean.cpu()) / self.std.cpu()
        outs = [scores_of(self.module(xn[i : i + self.batch_size])) for i in range(0, n, self.batch_size)]
        out = torch.cat(outs) if outs else torch.zeros(0, self.num_classes)
        if out.dim() != 2 or out.shape[0] != n:
            raise InvalidInputError(
                f"the query-only model returned scores of shape {tuple(out.shape)} for {n} images; it must return "
                f"({n}, num_classes)")
        return out.to(x.device)

    def forward(self, x: ImageBatch) -> torch.Tensor:
        """Logits of ``x`` (no autograd graph: the network is a black box); counted in :meth:`raw_output`."""
        with torch.no_grad():
            return self._as_logits(self.raw_output(x))

    def loss_and_input_grad(
        self, x: ImageBatch, loss_fn: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``loss_fn(logits)`` and its gradient w.r.t. ``x``, estimated from queries (module docstring's formula)."""
        x = x.detach()
        z = self(x)
        zr = z.clone().requires_grad_(True)
        with torch.enable_grad():
            loss = loss_fn(zr)
            (gz,) = torch.autograd.grad(loss, zr)
        grad = torch.zeros_like(x)
        n, q = int(x.shape[0]), self.samples
        # images per chunk: about batch_size probes, and at most PROBE_VALUES probe values in memory at once
        per = max(1, min(self.batch_size // (2 * q), PROBE_VALUES // (2 * q * max(1, math.prod(x.shape[1:])))))
        for lo in range(0, n, per):
            xb = x[lo : lo + per]
            m = int(xb.shape[0])
            u = torch.randn((m, q, *xb.shape[1:]), dtype=x.dtype)
            probes = torch.cat([xb[:, None] + self.sigma * u, xb[:, None] - self.sigma * u], 1).flatten(0, 1)
            out = self(probes).view(m, 2, q, -1)
            slope = ((out[:, 0] - out[:, 1]) * gz[lo : lo + m, None, :]).sum(-1) / (2.0 * self.sigma)  # (m, q)
            grad[lo : lo + m] = (slope.view(m, q, *([1] * (x.dim() - 1))) * u).mean(1)
        return loss.detach(), grad

    def queries_per_gradient(self, n_images: int) -> int:
        """Queries one :meth:`loss_and_input_grad` call on ``n_images`` images makes: ``n (1 + 2q)``."""
        return int(n_images) * (1 + 2 * self.samples)


def check_query_settings(samples: object, sigma: object, max_queries: object) -> None:
    """Reject bad estimator settings with a message that names the parameter (also used by the CLI up front)."""
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise InvalidInputError(f"--query-samples (samples) must be an int >= 1; got {samples!r}")
    if not isinstance(sigma, int | float) or isinstance(sigma, bool) or not math.isfinite(sigma) or not 0 < sigma < 1:
        raise InvalidInputError(f"--query-sigma (sigma) must be a number in (0, 1) (pixel units); got {sigma!r}")
    if max_queries is not None and (not isinstance(max_queries, int) or isinstance(max_queries, bool) or max_queries < 1):
        raise InvalidInputError(f"--max-queries (max_queries) must be None or an int >= 1; got {max_queries!r}")


def query_only(model: Classifier, *, samples: int = DEFAULT_SAMPLES, sigma: float = DEFAULT_SIGMA,
               max_queries: int | None = None) -> QueryClassifier:
    """``model`` seen through its scores only (``trojanscan scan --query-only``): what a prediction endpoint gives.

    The white-box model answers the queries (on its own device, normalising as it does), so a scan of the
    wrapper measures exactly what the query-only path loses against the white-box one on the same network.
    """
    if isinstance(model, QueryClassifier):
        raise InvalidInputError("the model is already query-only")
    if not isinstance(model, Classifier):
        raise InvalidInputError(f"model must be a trojanscan Classifier; got {type(model).__name__}")

    @torch.no_grad()
    def predict(a: np.ndarray) -> np.ndarray:
        return model.raw_output(torch.from_numpy(a)).cpu().numpy()

    meta = {**model.metadata, "white_box_format": model.metadata.get("format")}
    return QueryClassifier(predict, model.input_shape, model.num_classes, class_names=model.class_names,
                           metadata=meta, outputs=model.outputs, samples=samples, sigma=sigma, max_queries=max_queries)
