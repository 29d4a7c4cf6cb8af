"""NeuronInspect (Huang, Alzantot & Srivastava, 2019): backdoor detection from output explanations.

Pipeline (paper §"Algorithm Design"; every deviation is listed in docs/methods/neuron_inspect.md):

1. **Rectified saliency** (§"Saliency Map Generation"): for k clean images and every class y, the
   gradient of the *logit* f_y w.r.t. the input, with negative gradients clipped at every ReLU during
   the backward pass (:mod:`trojanscan.saliency`). One heat map per (class, image):
   ``M = max_channel |grad|`` (Simonyan et al. 2013).
2. **Features** (§"Features Extraction"), per class over its k maps:
   sparseness ``||M||_1``, smoothness ``||M * laplacian||_1`` and persistence
   ``||T(M_1) xor T(M_2) xor ... xor T(M_k)||_1`` with ``T`` a threshold.
3. **Combined feature** ``f = lam_sp f_sparse + lam_sm f_smooth + lam_pe f_persistent``
   (§"Combined Feature"), after dividing each feature by its median over classes (so one set of
   weights fits any model; the paper tuned its weights per dataset).
4. **Outlier test** (§"Outlier detection"): MAD anomaly index on the left tail, cutoff 2
   (done by :meth:`Detector.scan` through :mod:`trojanscan.stats`).

Sign convention (``variant``): the per-class statistic is small for a suspected target.

- ``"mass"`` (default): maps are in *model-wide units* (divided by one constant for the whole model,
  the median over all K*k maps of their peak), so the features keep the differences between classes.
  The statistic is ``-f``: the target is the class whose explanations are **least sparse** (the
  paper's words), i.e. carry the most rectified saliency. In model-wide units smoothness and
  persistence as defined grow with the amount of saliency, so they point the same way.
- ``"paper"``: each map is divided by its own peak (shape only) and the statistic is ``+f``: the
  target is the class with the smallest sparseness, smoothness and persistence values, the paper's
  §"Outlier detection" read literally. On every model we tried it did not separate the target (see
  the doc); it is kept for the paper-reproduction benchmarks.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from trojanscan import stats
from trojanscan.data.base import Dataset
from trojanscan.detectors.base import Detector, DetectorOutput, register_detector
from trojanscan.errors import InvalidInputError
from trojanscan.models.classifier import Classifier
from trojanscan.report.scan_report import DataInfo
from trojanscan.saliency import RULES, Rectification, class_gradients, saliency_maps, unfused_classifier

#: The discrete Laplacian filter f_s of the smoothness feature (paper §"Smoothness").
LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
VARIANTS = ("mass", "paper")


def _weights(maps: torch.Tensor, use: torch.Tensor | None) -> torch.Tensor:
    """(K, k) float weights: ``use`` (which images count for which class) or all ones."""
    return torch.ones(maps.shape[:2], dtype=maps.dtype) if use is None else use.to(maps.dtype)


def _masked_mean(values: torch.Tensor, use: torch.Tensor | None) -> torch.Tensor:
    w = _weights(values, use)
    return (values * w).sum(1) / w.sum(1).clamp_min(1.0)


def sparseness(maps: torch.Tensor, use: torch.Tensor | None = None) -> torch.Tensor:
    """Paper §"Sparseness": ``||M||_1`` per map, averaged over the images ``use`` selects: (K, k, H, W) -> (K,)."""
    return _masked_mean(maps.flatten(2).sum(2), use)


def laplacian(maps: torch.Tensor) -> torch.Tensor:
    """``M * f_s``, the 3x3 Laplacian of each map (replicate padding: the image border adds no edge)."""
    lead, (h, w) = maps.shape[:-2], maps.shape[-2:]
    x = F.pad(maps.reshape(-1, 1, h, w), (1, 1, 1, 1), mode="replicate")
    return F.conv2d(x, LAPLACIAN.to(maps.dtype).view(1, 1, 3, 3)).reshape(*lead, h, w)


def smoothness(maps: torch.Tensor, use: torch.Tensor | None = None) -> torch.Tensor:
    """Paper §"Smoothness": ``||laplacian(M)||_1`` per map, averaged over the images ``use`` selects: (K,)."""
    return _masked_mean(laplacian(maps).abs().flatten(2).sum(2), use)


def even_selection(use: torch.Tensor) -> torch.Tensor:
    """Drop the last selected image of every row with an odd count, so each class XORs an even number."""
    cnt = use.sum(1, keepdim=True)
    last = use & (use.cumsum(1) == cnt)
    return use & ~(last & (cnt % 2 == 1))


def persistence(maps: torch.Tensor, threshold: float, use: torch.Tensor | None = None) -> torch.Tensor:
    """Paper §"Persistence": ``||T(M_1) xor ... xor T(M_k)||_1`` with ``T(M) = M > threshold``.

    The chained XOR of binary maps is their sum modulo 2 (computed that way, vectorised). Over an even
    number of maps a pixel that is on (or off) in every map gives 0: only pixels that change between
    images count; with an odd number a pixel on in every map would count 1, so each class's selection
    is made even (:func:`even_selection`). (K, k, H, W) -> (K,).
    """
    sel = even_selection(torch.ones(maps.shape[:2], dtype=torch.bool) if use is None else use.bool())
    binary = ((maps > threshold) & sel[..., None, None]).to(torch.int64)
    return (binary.sum(1) % 2).flatten(1).sum(1).to(maps.dtype)


def own_class_excluded(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, k) mask: image i counts for class c unless its label is c; a class left with fewer than two
    images uses all of them."""
    use = labels[None, :] != torch.arange(num_classes)[:, None]
    few = use.sum(1) < 2
    use[few] = True
    return use


def combine(
    sp: torch.Tensor, sm: torch.Tensor, pe: torch.Tensor, lambdas: tuple[float, float, float], normalize: bool
) -> torch.Tensor:
    """Paper §"Combined Feature": ``lam_sp f_sp + lam_sm f_sm + lam_pe f_pe``, each feature first divided
    by its median over classes when ``normalize`` (a feature whose median is 0 is left as is)."""
    feats = []
    for f in (sp, sm, pe):
        f = f.double()
        if normalize:
            m = stats.median(f.numpy())
            if m > 0:
                f = f / m
        feats.append(f)
    return lambdas[0] * feats[0] + lambdas[1] * feats[1] + lambdas[2] * feats[2]


@register_detector
class NeuronInspect(Detector):
    """NeuronInspect: outlier explanations of the output classes (Huang et al. 2019).

    Parameters
    ----------
    n_images:
        k, the clean images explained (rounded down to an even number, see :func:`persistence`).
        The paper does not give k. Default 50.
    lambdas:
        ``(lam_sp, lam_sm, lam_pe)``. Paper: MNIST (0.1, 1, 1), GTSRB (1, 1, 10). Default (1, 1, 1)
        on median-normalised features.
    threshold:
        T in the persistence feature, in map units (the model-wide scale for ``variant="mass"``, each
        map's own peak for ``"paper"``). The paper gives none. Default 0.5.
    normalize_features:
        Divide each feature by its median over classes before combining (default True).
    variant:
        ``"mass"`` (default) or ``"paper"``; see the module docstring.
    exclude_own_class:
        Class c's features ignore the images labelled c (given labels, else the model's predictions):
        a class's explanation of its own images reflects genuine class evidence, whose strength varies
        between classes and only adds noise to the comparison. Default True; the paper uses all k.
    rectify:
        Rectified saliency (default True); False gives plain saliency of the logits.
    rule:
        How the rectification clips: ``"positive"`` (default: each ReLU-like backward replaced by
        ``clamp(grad, 0)``, so gradient reaches units that did not fire on the clean image: the trigger
        "hidden in the weights") or ``"guided"`` (guided backpropagation); see :mod:`trojanscan.saliency`.
    batch_size:
        (image, class) pairs per forward/backward pass (memory knob; results do not depend on it).
    inversion_per_class, inversion_steps:
        Data-free only (``data=None``): model-inversion images per class and optimisation steps
        (:func:`trojanscan.inversion.invert`).
    cutoff, alpha:
        Anomaly-index cutoff (paper: 2) or a significance level that overrides it.
    familywise:
        the per-model cutoff for the number of classes (stats.familywise_cutoff; not in the paper).
    """

    name: ClassVar[str] = "neuron_inspect"
    test: ClassVar[str] = "mad"
    needs_white_box: ClassVar[bool] = True
    why_white_box: ClassVar[str] = ("its saliency maps are gradients of the logits back-propagated through the "
                                    "network's ReLUs (rectified), which a model known only by its scores does not give")

    def __init__(
        self,
        *,
        n_images: int = 50,
        lambdas: tuple[float, float, float] = (1.0, 1.0, 1.0),
        threshold: float = 0.5,
        normalize_features: bool = True,
        variant: str = "mass",
        exclude_own_class: bool = True,
        rectify: bool = True,
        rule: str = "positive",
        batch_size: int = 512,
        inversion_per_class: int = 5,
        inversion_steps: int = 300,
        cutoff: float = 2.0,
        alpha: float | None = None,
        familywise: bool = False,
    ) -> None:
        self.n_images = n_images
        self.lambdas = lambdas
        self.threshold = threshold
        self.normalize_features = normalize_features
        self.variant = variant
        self.exclude_own_class = exclude_own_class
        self.rectify = rectify
        self.rule = rule
        self.batch_size = batch_size
        self.inversion_per_class = inversion_per_class
        self.inversion_steps = inversion_steps
        self.cutoff = cutoff
        self.alpha = alpha
        self.familywise = familywise

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> None:
        for name, lo in (("n_images", 2), ("batch_size", 1), ("inversion_per_class", 1), ("inversion_steps", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise InvalidInputError(f"The {name!r} parameter must be an int >= {lo}; got {v!r}")
        lam = self.lambdas
        if (
            not isinstance(lam, tuple | list)
            or len(lam) != 3
            or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in lam)
            or sum(lam) <= 0
        ):
            raise InvalidInputError(
                f"The 'lambdas' parameter must be three non-negative finite numbers (lam_sp, lam_sm, lam_pe), "
                f"not all zero; got {lam!r}. The paper uses (0.1, 1, 1) on MNIST and (1, 1, 10) on GTSRB."
            )
        t = self.threshold
        if not isinstance(t, int | float) or isinstance(t, bool) or not math.isfinite(t) or t < 0:
            raise InvalidInputError(f"The 'threshold' parameter must be a finite number >= 0; got {t!r}. The default is 0.5.")
        for name in ("normalize_features", "exclude_own_class", "rectify"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInputError(f"The {name!r} parameter must be True or False; got {getattr(self, name)!r}")
        if self.rule not in RULES:
            raise InvalidInputError(f"The 'rule' parameter must be one of {RULES}; got {self.rule!r}")
        if self.variant not in VARIANTS:
            raise InvalidInputError(f"The 'variant' parameter must be one of {VARIANTS}; got {self.variant!r}")

    # ------------------------------------------------------------------ the method
    def _run(self, model: Classifier, data: Dataset | None, *, seed: int, progress: bool) -> DetectorOutput:
        notes: list[str] = []
        images, labels, info = self._images(model, data, seed, progress, notes)
        grads_maps, rect = self._maps(model, images, progress, notes)  # (K, k, H, W), raw heat maps
        k_maps = grads_maps.shape[1]
        if self.variant == "mass":
            peaks = grads_maps.flatten(2).amax(2)
            scale = float(peaks.flatten().median())
            maps = grads_maps / scale if scale > 0 else grads_maps
            notes.append(f"maps in model-wide units: divided by {scale:.4g}, the median peak of the {peaks.numel()} maps")
        else:
            peaks = grads_maps.flatten(2).amax(2).clamp_min(1e-30)
            maps = grads_maps / peaks[..., None, None]
            notes.append("maps divided by their own peak (variant 'paper')")
        use = own_class_excluded(labels, model.num_classes) if self.exclude_own_class else None
        if use is not None:
            notes.append("each class's features exclude the images labelled with that class")
        sp = sparseness(maps, use)
        sm = smoothness(maps, use)
        pe = persistence(maps, float(self.threshold), use)
        lam = (float(self.lambdas[0]), float(self.lambdas[1]), float(self.lambdas[2]))
        f = combine(sp, sm, pe, lam, self.normalize_features)
        stat = -f if self.variant == "mass" else f
        notes.append(rect.describe())
        notes.append(
            f"{k_maps} images x {model.num_classes} classes; statistic = {'-' if self.variant == 'mass' else '+'}"
            f"(lam_sp*sparseness + lam_sm*smoothness + lam_pe*persistence)"
            f"{' on median-normalised features' if self.normalize_features else ''}: small = suspicious"
        )
        return DetectorOutput(
            statistics=[float(v) for v in stat],
            data=info,
            extra={"sparseness": sp.tolist(), "smoothness": sm.tolist(), "persistence": pe.tolist()},
            artifacts={"heatmaps": maps.mean(1).float().contiguous()},
            notes=notes,
        )

    # ------------------------------------------------------------------ helpers
    def _images(
        self, model: Classifier, data: Dataset | None, seed: int, progress: bool, notes: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor, DataInfo]:
        """k clean images and their labels (given, else the model's predictions), balanced over classes."""
        g = torch.Generator().manual_seed(seed)
        if data is None:
            from trojanscan.inversion import invert

            inv = invert(
                model, n_per_class=self.inversion_per_class, steps=self.inversion_steps, seed=seed, progress=progress
            )
            data = inv.data
            source = "model_inversion"
            notes.append(
                f"data-free: {len(data)} model-inversion images (mean target confidence {float(inv.confidence.mean()):.3f})"
                + (f"; {inv.rescued} re-optimised on -log f" if inv.rescued else "")
            )
        else:
            source = "clean_data"
        x, y = data.x, data.y
        if bool((y < 0).any()):  # unlabelled: label a random pool of 8k images by the model's predictions
            pool = torch.randperm(len(x), generator=g)[: 8 * int(self.n_images)].sort().values
            x = x[pool]
            y = model.predict(x)
            notes.append(f"unlabelled data: classes balanced by the model's predictions on {len(x)} images")
        k = min(int(self.n_images), len(x))
        k -= k % 2
        if k < 2:
            raise InvalidInputError(
                f"NeuronInspect needs at least 2 clean images (its persistence feature compares images); got {len(x)}"
            )
        idx = _balanced_indices(y, k, g)
        return x[idx], y[idx], DataInfo(source=source, n_images=k)

    def _maps(
        self, model: Classifier, x: torch.Tensor, progress: bool, notes: list[str]
    ) -> tuple[torch.Tensor, Rectification]:
        """Heat maps (K, k, H, W) for every class and image, in chunks of ``batch_size`` (image, class) pairs."""
        kc = model.num_classes
        n = x.shape[0]
        per_pass = max(1, self.batch_size // kc)  # images per pass (all classes at once)
        class_chunk = kc if self.batch_size >= kc else self.batch_size
        forward: Classifier = model
        total = Rectification(requested=self.rectify, rule=self.rule)
        out = torch.empty(kc, n, *x.shape[2:])
        chunks = [(i, c) for i in range(0, n, per_pass) for c in range(0, kc, class_chunk)]
        copy: Classifier | None = None
        for j, (i, c) in enumerate(tqdm(chunks, desc="neuron_inspect saliency", disable=not progress, leave=False)):
            classes = torch.arange(c, min(c + class_chunk, kc))
            grads, rect = class_gradients(forward, x[i : i + per_pass], classes, rectify=self.rectify, rule=self.rule)
            if j == 0 and self.rectify and rect.opaque and copy is None:
                copy = unfused_classifier(model)
                if copy is not None:  # fused TorchScript plan: recompute on a fresh, unfused copy
                    forward = copy
                    grads, rect = class_gradients(forward, x[i : i + per_pass], classes, rectify=self.rectify, rule=self.rule)
                    notes.append("TorchScript model ran fused: used an unfused in-memory copy (same weights)")
            total.merge(rect)
            out[c : c + classes.numel(), i : i + per_pass] = saliency_maps(grads)
        if copy is not None:
            model.queries += copy.queries
        return out, total


def _balanced_indices(y: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """``k`` indices drawn round-robin over the labels (as balanced as the data allows), seeded."""
    perm = torch.randperm(y.numel(), generator=g)
    ys = y[perm]
    # rank of each image within its label (in random order), then take the lowest ranks first
    order = torch.argsort(ys, stable=True)
    sorted_y = ys[order]
    first = torch.searchsorted(sorted_y, sorted_y, right=False)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel()) - first
    key = rank * (int(y.max()) + 2) + (ys - int(y.min()))
    chosen = perm[torch.argsort(key, stable=True)[:k]]
    return chosen.sort().values
