"""DeepInspect (Chen, Fu, Zhao, Koushanfar, IJCAI 2019): data-free trojan detection with a conditional generator.

The three steps of §3.3, all from the model alone:

1. **Model inversion** (Eq. 1): :func:`trojanscan.inversion.invert` recovers ``n_per_class`` substitute
   images per class (5 in the paper, §4.3), all classes in one batch. If the caller does give clean
   images, they are used instead (the paper's "assuming a clean dataset is available" experiment).
2. **Trigger generation** (Eqs. 2–6): one conditional generator ``G(z, t)`` for all classes, trained
   against the frozen model with ``L = L_trigger + γ1·L_GAN + γ2·L_pert``
   (:func:`trojanscan.generator.train_trigger_generator`); an auto-encoder embedding for large inputs
   (§4.2). ``γ2`` is adapted during training so that G's triggers reach the paper's 95 % attack success.
3. **Anomaly detection**: per class, the perturbation level of G's triggers — the soft hinge
   ``max(0, ||G(z, t)||_1 − thres)`` of Eq. 5 averaged over ``n_samples`` noise draws, what the paper
   plots in Fig. 4(b) — goes through the double-MAD deviation factor on the left tail (``test = "dmad"``);
   every label above the cutoff is a suspect (multi-target attacks report several).

Every choice the paper leaves open is listed in docs/methods/deep_inspect.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch

from trojanscan import stats
from trojanscan.data.base import Dataset
from trojanscan.detectors.base import Detector, DetectorOutput, register_detector
from trojanscan.errors import InvalidInputError
from trojanscan.generator import AutoEncoder, train_autoencoder, train_trigger_generator, trigger_statistics
from trojanscan.models.classifier import Classifier
from trojanscan.report.scan_report import ClassResult, DataInfo, ScanReport

#: Inputs with more values than this (C·H·W) use the auto-encoder embedding when ``use_autoencoder`` is None.
#: The paper uses it for its 224x224x3 benchmarks and not for MNIST (28x28x1) or GTSRB (32x32x3); we
#: switch above 3x64x64 = 12288 values, where a pixel-space MLP generator's last layer passes 3 M weights.
AUTOENCODER_ABOVE = 3 * 64 * 64

#: At most this many clean images are used when the caller supplies clean data (a random, seeded subset).
MAX_CLEAN_IMAGES = 2000


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


def _check(ok: bool, name: str, constraint: str, got: object, hint: str = "") -> None:
    if not ok:
        raise InvalidInputError(f"The '{name}' parameter of DeepInspect must be {constraint}; got {got!r}. {hint}".strip())


def uses_autoencoder(use_autoencoder: bool | None, input_shape: tuple[int, int, int]) -> bool:
    """§4.2: the embedding is used when asked, or (``None``) above :data:`AUTOENCODER_ABOVE` input values."""
    if use_autoencoder is not None:
        return use_autoencoder
    c, h, w = input_shape
    return c * h * w > AUTOENCODER_ABOVE


def perturbation_statistic(hinge: np.ndarray, l1: np.ndarray) -> tuple[np.ndarray, str]:
    """The per-class test statistic (§3.3, Fig. 4(b)): the mean soft hinge, or the mean raw L1 if it is degenerate.

    The deviation factor is shift-invariant, so the hinge ``max(0, L1 − thres)`` and the raw L1 give the
    same indices as long as no trigger sits under ``thres``. When triggers do, the hinge clips them to 0;
    if that leaves the left half without spread (its MAD is 0: e.g. every class, or half of them, at
    0) the DMAD cannot rank anything, and the raw L1 (which keeps the ordering) is used instead.
    """
    m = float(np.median(hinge))
    left = hinge[hinge <= m]
    mad_left = stats.CONSISTENCY * float(np.median(np.abs(left - m)))
    if mad_left > 1e-12 * max(float(np.max(np.abs(hinge))), 1e-300):
        return hinge, "hinge"
    return l1, "l1"


def values_on_scale(hinge: np.ndarray, l1: np.ndarray, scale: str) -> tuple[np.ndarray, str]:
    """The per-class values the test decides on, and which they are: the L1 norm on the ``log`` scale (the hinge's
    threshold shift would distort a logarithm), else :func:`perturbation_statistic` (``hinge`` or ``l1``)."""
    if scale == "log":
        return np.asarray(l1, dtype=np.float64), "log"
    return perturbation_statistic(np.asarray(hinge, dtype=np.float64), np.asarray(l1, dtype=np.float64))


#: The start of the note :meth:`DeepInspect.decision_notes` writes (re-deciding a report replaces it).
GENERATOR_NOTE = "each generator alone"


def _fmt_set(labels: Sequence[int]) -> str:
    return "{" + ", ".join(map(str, labels)) + "}"


def _bn_note(layers: int, weight: float, white_box: bool) -> str:
    """The report's note on the batch-norm prior of the model inversion (:mod:`trojanscan.inversion`)."""
    if not white_box:
        return "batch-norm prior: off (a query-only model's layers cannot be read)"
    if not layers:
        return "batch-norm prior: no batch-norm layer in the model's graph, so Eq. 1 and its image priors alone"
    return f"batch-norm prior: weight {weight:g}, matched the running statistics of {layers} batch-norm layer(s)"


@register_detector
class DeepInspect(Detector):
    """DeepInspect: model inversion + conditional trigger generator + double-MAD test (see module docstring).

    Hyperparameters (paper values in docs/methods/deep_inspect.md):

    - model inversion (Eq. 1): ``n_per_class`` images per class, ``inversion_steps`` Adam steps at
      ``inversion_lr``, image priors ``tv_weight`` (total variation), ``l2_weight`` (pull to grey) and
      ``inversion_jitter`` (random-shift prior, off by default), ``inversion_bn_weight`` (the batch-norm prior
      R_BN of :mod:`trojanscan.inversion`, not in the paper; white-box models with batch norm only).
    - generator (Eqs. 3–6): ``steps`` Adam steps of ``batch_size`` (image, noise, target) triples at ``lr``;
      ``gamma1`` (L_GAN), ``gamma2`` (initial L_pert weight), ``thres_ratio`` (hinge threshold as a
      fraction of the number of input values C·H·W), ``asr_target`` (γ2 is adapted so that the running
      attack success stays at this level; None keeps γ2 fixed), ``z_dim``, ``embed_dim``, ``hidden``.
    - statistic: ``n_samples`` noise draws per class; attack success measured on ``n_attack`` images
      of other classes per class; ``n_repeats`` independently seeded generators (same substitute data)
      whose per-class statistics are averaged before the test (the paper averages 10 repeated runs, §4.3).
    - auto-encoder (§4.2): ``use_autoencoder`` (None = automatic above :data:`AUTOENCODER_ABOVE` input
      values), ``latent_dim``, ``ae_steps``, ``ae_width`` (channels of the auto-encoder's full-resolution layer,
      doubled at each halving up to 256); one auto-encoder per scan, shared by its generators.
    - decision: ``cutoff`` (2.0, the paper's c) or ``alpha`` (significance level, Eq. 7); ``familywise``
      raises it to the per-model cutoff for the number of classes (stats.familywise_cutoff; not in the paper);
      ``scale``: ``"raw"`` (the paper: DMAD of the soft hinge) or ``"log"`` (DMAD of the log L1 norm of the triggers,
      stats.on_scale; not in the paper. The hinge's threshold shift would distort a logarithm, so the L1 is used).
    """

    name: ClassVar[str] = "deep_inspect"
    test: ClassVar[str] = "dmad"

    def __init__(
        self,
        *,
        n_per_class: int = 5,
        inversion_steps: int = 300,
        inversion_lr: float = 0.1,
        tv_weight: float = 0.3,
        l2_weight: float = 0.05,
        inversion_jitter: int = 0,
        inversion_bn_weight: float = 0.0,
        steps: int = 1000,
        batch_size: int = 64,
        lr: float = 2e-3,
        gamma1: float = 1.0,
        gamma2: float = 0.2,
        thres_ratio: float = 0.005,
        asr_target: float | None = 0.99,
        z_dim: int = 100,
        embed_dim: int = 50,
        hidden: int = 256,
        n_samples: int = 20,
        n_attack: int = 50,
        n_repeats: int = 3,
        use_autoencoder: bool | None = None,
        latent_dim: int = 128,
        ae_steps: int = 300,
        ae_width: int = 32,
        pairs: bool = False,
        pair_steps: int = 600,
        cutoff: float = 2.0,
        alpha: float | None = None,
        familywise: bool = False,
        scale: str = "raw",
    ) -> None:
        self.n_per_class = n_per_class
        self.inversion_steps = inversion_steps
        self.inversion_lr = inversion_lr
        self.tv_weight = tv_weight
        self.l2_weight = l2_weight
        self.inversion_jitter = inversion_jitter
        self.inversion_bn_weight = inversion_bn_weight
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.gamma1 = gamma1
        self.gamma2 = gamma2
        self.thres_ratio = thres_ratio
        self.asr_target = asr_target
        self.z_dim = z_dim
        self.embed_dim = embed_dim
        self.hidden = hidden
        self.n_samples = n_samples
        self.n_attack = n_attack
        self.n_repeats = n_repeats
        self.use_autoencoder = use_autoencoder
        self.latent_dim = latent_dim
        self.ae_steps = ae_steps
        self.ae_width = ae_width
        self.pairs = pairs
        self.pair_steps = pair_steps
        self.cutoff = cutoff
        self.alpha = alpha
        self.familywise = familywise
        self.scale = scale

    def _check_params(self) -> None:
        for name in ("n_per_class", "inversion_steps", "steps", "batch_size", "z_dim", "embed_dim", "hidden",
                     "n_samples", "n_attack", "n_repeats", "latent_dim", "ae_steps", "ae_width", "pair_steps"):
            v = getattr(self, name)
            _check(_is_int(v) and v >= 1, name, "an int >= 1", v)
        _check(_is_int(self.inversion_jitter) and self.inversion_jitter >= 0, "inversion_jitter", "an int >= 0",
               self.inversion_jitter)
        for name in ("inversion_lr", "lr"):
            v = getattr(self, name)
            _check(_is_num(v) and v > 0, name, "a positive finite number", v)
        for name in ("tv_weight", "l2_weight", "inversion_bn_weight", "gamma1", "gamma2"):
            v = getattr(self, name)
            _check(_is_num(v) and v >= 0, name, "a non-negative finite number", v)
        _check(_is_num(self.thres_ratio) and 0 <= self.thres_ratio < 1, "thres_ratio", "a number in [0, 1)",
               self.thres_ratio, "It is the hinge threshold as a fraction of C*H*W; the default is 0.005.")
        t = self.asr_target
        _check(t is None or (_is_num(t) and 0 < t < 1), "asr_target", "None or a number in (0, 1)", t,
               "The paper asks for 95% attack success: 0.95.")
        _check(self.asr_target is None or self.gamma2 > 0, "gamma2", "> 0 when asr_target adapts it", self.gamma2)
        _check(self.use_autoencoder is None or isinstance(self.use_autoencoder, bool), "use_autoencoder",
               "None (automatic), True or False", self.use_autoencoder)
        _check(isinstance(self.pairs, bool), "pairs", "True or False", self.pairs)
        _check(not (self.pairs and self.scale == "log"), "scale", "'raw' in pair mode", self.scale,
               "Pair mode already tests the log L1 of every pair (docs/methods/deep_inspect.md).")

    @classmethod
    def statistics_on_scale(cls, classes: Sequence[ClassResult], scale: str) -> list[float]:
        """``raw``: the soft hinge, or the L1 when the hinge is degenerate (:func:`perturbation_statistic`); ``log``:
        the L1 norm of the triggers. Both come from the saved per-class ``extra`` (``hinge``, ``l1``)."""
        stats.check_scale(scale, cls.__name__)
        missing = [c.label for c in classes if "l1" not in c.extra or "hinge" not in c.extra]
        if missing:
            raise InvalidInputError(f"the report has no per-class 'hinge' and 'l1' for labels {missing} (a pair-mode "
                                    "report, or one written by another tool): it cannot be put on another scale")
        values, _ = values_on_scale(np.array([c.extra["hinge"] for c in classes]),
                                    np.array([c.extra["l1"] for c in classes]), scale)
        return [float(v) for v in values]

    decision_note_prefixes: ClassVar[tuple[str, ...]] = (GENERATOR_NOTE,)

    @classmethod
    def decision_notes(cls, report: ScanReport) -> list[str]:
        """With ``n_repeats > 1`` (not in the paper, which reports the mean of its runs only): the suspects each
        generator's own statistics give under the report's test, scale and cutoff, so a reader sees whether the
        verdict on the mean rests on every run or on one. Read from the per-class ``l1_runR`` / ``hinge_runR``, so a
        re-decided report (rethreshold, rescale) says it for its own cutoff and scale."""
        n = 0
        while report.classes and all(f"l1_run{n + 1}" in c.extra and f"hinge_run{n + 1}" in c.extra
                                     for c in report.classes):
            n += 1
        test = str(report.config.get("test", cls.test))
        if n < 2 or test not in stats.TESTS:
            return []
        scale = str(report.config.get("scale", "raw"))
        per = []
        for r in range(1, n + 1):
            values, _ = values_on_scale(np.array([c.extra[f"hinge_run{r}"] for c in report.classes]),
                                        np.array([c.extra[f"l1_run{r}"] for c in report.classes]), scale)
            per.append(stats.decide(values, cutoff=report.cutoff, test=test, scale=scale).suspects)
        labels = sorted({lab for s in per for lab in s})
        if not labels:
            tally = f"none of the {n} flags a label"
        elif all(s == per[0] for s in per):
            tally = f"all {n} agree"
        else:
            tally = "; ".join(f"label {lab} by {sum(lab in s for s in per)} of {n}" for lab in labels)
        return [f"{GENERATOR_NOTE} (not in the paper: the same test at cutoff {report.cutoff:.2f} on each of the {n} "
                f"seeded generators' own statistics; the verdict tests their mean) flags "
                f"{', '.join(_fmt_set(s) for s in per)}: {tally}"]

    def decision_test(self) -> str:
        """``dmad`` (the paper's test over labels) or, in pair mode, ``dmad_pairs`` (per-model scores of the pairs)."""
        return stats.PAIRS_TEST if self.pairs else self.test

    def _planned_queries(self, model: Classifier, data: Dataset | None) -> int | None:
        """Exactly the queries :meth:`_run` makes (each input-gradient step costs ``per_image`` queries per image);
        in pair mode an upper bound (exact when the substitutes cover every class).

        Inversion: ``inversion_steps`` gradient steps on ``K * n_per_class`` images, then one pass for their
        confidence; one pass to label the substitutes; per generator: ``steps`` gradient steps on ``batch_size``
        images, then ``n_attack`` stamped images per class for the attack success.
        """
        per_image = model.queries_per_gradient(1)
        k = model.num_classes
        if data is None:
            n = k * self.n_per_class
            substitutes = self.inversion_steps * n * per_image + n
        else:
            n = min(len(data), MAX_CLEAN_IMAGES)
            substitutes = 0
        if self.pairs:  # at most one generator per class (a class with no substitute image is skipped): an upper bound
            per_source = self.pair_steps * self.batch_size * per_image + k * self.n_attack
            return int(substitutes + n + k * per_source)
        per_generator = self.steps * self.batch_size * per_image + k * self.n_attack
        return int(substitutes + n + self.n_repeats * per_generator)

    def _run(self, model: Classifier, data: Dataset | None, *, seed: int, progress: bool) -> DetectorOutput:
        """Steps (i)–(iii) of §3.3; returns the per-class perturbation level of G's triggers."""
        notes: list[str] = []
        artifacts: dict[str, torch.Tensor] = {}
        k = model.num_classes
        c, h, w = model.input_shape
        if data is None:
            from trojanscan.inversion import invert

            inv = invert(model, n_per_class=self.n_per_class, steps=self.inversion_steps, lr=self.inversion_lr,
                         tv_weight=self.tv_weight, l2_weight=self.l2_weight, seed=seed, progress=progress,
                         jitter=self.inversion_jitter,
                         bn_weight=self.inversion_bn_weight if model.white_box else 0.0)
            x = inv.data.x
            source = "model_inversion"
            self.inversion_images_per_second_ = inv.images_per_second  # timing stays out of the report notes
            notes.append(
                f"model inversion: {x.shape[0]} images ({self.n_per_class} per class, {self.inversion_steps} steps) "
                "; mean target confidence "
                f"{float(inv.confidence.mean()):.3f}"
                + (f"; {inv.rescued} image(s) that Eq. 1 left below 0.5 confidence re-optimised on -log f"
                   if inv.rescued else "")
            )
            if self.inversion_bn_weight:
                notes.append(_bn_note(inv.bn_layers, self.inversion_bn_weight, model.white_box))
        else:
            self.inversion_images_per_second_ = float("nan")  # no inversion in this scan
            x = data.x
            if x.shape[0] > MAX_CLEAN_IMAGES:
                g = torch.Generator().manual_seed(seed)
                x = x[torch.randperm(x.shape[0], generator=g)[:MAX_CLEAN_IMAGES]]
            source = "clean_data"
        # each image's class is what the model predicts for it (an inverted image may miss its target)
        y = model.predict(x)
        substitute = Dataset(x, y, list(model.class_names), source)
        n_classes_seen = int(torch.unique(y).numel())
        if n_classes_seen < k:
            notes.append(f"the substitute images cover {n_classes_seen} of {k} classes")
        use_ae = uses_autoencoder(self.use_autoencoder, model.input_shape)
        # §4.2: one auto-encoder fitted to the substitute images, shared by every generator of this scan
        ae: AutoEncoder | None = None
        if use_ae:
            ae, _ = train_autoencoder(x, latent_dim=self.latent_dim, width=self.ae_width, steps=self.ae_steps, seed=seed,
                                      progress=progress)
        thres = float(self.thres_ratio) * c * h * w
        if self.pairs:
            return self._run_pairs(model, substitute, x, source, thres, ae, notes, seed=seed, progress=progress)
        gens = []
        runs = []
        for r in range(self.n_repeats):
            # repeat 0 uses the scan's seed (it is the single-run scan); later ones a seed derived from (seed, r)
            rseed = seed if r == 0 else int(np.random.SeedSequence([seed, r]).generate_state(1)[0])
            gen = train_trigger_generator(
                model, substitute, steps=self.steps, batch_size=self.batch_size, lr=self.lr, gamma1=self.gamma1,
                gamma2=self.gamma2, thres=thres, asr_target=self.asr_target, z_dim=self.z_dim,
                embed_dim=self.embed_dim, hidden=self.hidden, use_autoencoder=use_ae, autoencoder=ae, seed=rseed,
                progress=progress,
            )
            gens.append(gen)
            runs.append(trigger_statistics(model, gen, substitute, thres=thres, n_samples=self.n_samples,
                                           n_attack=self.n_attack, seed=rseed))
            log = gen.log_
            notes.append(
                f"trigger generator{f' {r + 1}/{self.n_repeats}' if self.n_repeats > 1 else ''}: {self.steps} steps, "
                f"final gamma2 {log.gamma2[-1]:.4g}, training attack success {log.attack_success[-1]:.3f}"
                + (f"; auto-encoder embedding (latent {self.latent_dim}, MSE {log.autoencoder_mse:.4f})"
                   if use_ae else "")
            )
        # scikit-learn-style fitted attributes, kept for patching (DeepInspect §5)
        self.generator_ = gens[0]
        self.generators_ = gens
        hinge = torch.stack([st.hinge for st in runs]).mean(0)
        l1 = torch.stack([st.l1 for st in runs]).mean(0)
        success = torch.stack([st.attack_success for st in runs]).mean(0)
        per_run: dict[str, list[float]] = {}
        if self.n_repeats > 1:  # and each generator's own numbers, for decision_notes
            notes.append(f"statistic: mean over {self.n_repeats} independently seeded generators")
            for r, run in enumerate(runs, 1):
                per_run[f"l1_run{r}"] = [float(v) for v in run.l1]
                per_run[f"hinge_run{r}"] = [float(v) for v in run.hinge]
        st = runs[0]
        values, which = values_on_scale(hinge.double().numpy(), l1.double().numpy(), self.scale)
        if which == "l1":
            notes.append(f"the soft hinge (thres {thres:.4g}) is degenerate (no spread in its left half): "
                         "the statistic is the raw L1 norm of the triggers")
        low = [i for i in range(k) if float(success[i]) < 0.95]
        if low:
            notes.append(f"triggers below 95% attack success on the substitute data for labels {low}")
        artifacts["triggers"] = st.triggers
        if source == "model_inversion":
            artifacts["inverted"] = x
            artifacts["inverted_labels"] = y.float()
        return DetectorOutput(
            statistics=[float(v) for v in values],
            data=DataInfo(source=source, n_images=int(x.shape[0])),
            extra={
                "attack_success": [float(v) for v in success],
                "l1": [float(v) for v in l1],
                "hinge": [float(v) for v in hinge],
                **per_run,
            },
            artifacts=artifacts,
            notes=notes,
        )

    def _run_pairs(self, model: Classifier, substitute: Dataset, x: torch.Tensor, source: str, thres: float,
                   ae: AutoEncoder | None, notes: list[str], *, seed: int, progress: bool) -> DetectorOutput:
        """Source-target pair mode (the paper's Discussions at the end of §4: "evaluating the required perturbation for each
        source-target class pair"), which finds attacks whose trigger sends each class to its *own* target
        (all-to-all, y -> y + 1), where no label's trigger is small for every source.

        For each source class s with substitutes: a generator ``G_s(z, t)`` trained as in Eq. 6 on the images of
        class s only (``pair_steps`` steps); ``L1[s, t]`` is the mean L1 norm of its triggers towards t. Each
        row is put on a common scale, ``r[s, t] = log(L1[s, t] / median_t L1[s, t])`` (sources differ in how far
        they are from every other class), and the double MAD runs over all K(K - 1) values of r, left tail. With
        that many values a per-value cutoff of 2 would flag nearly every clean model, so each pair's deviation
        factor is turned into a per-model normal score (:func:`trojanscan.stats.per_model_scores`): a cutoff c
        keeps its meaning alpha(c) per model. A label's index is its most anomalous pair's score, its statistic
        that pair's r, and ``extra["pair_source"]`` names the source.
        """
        k = model.num_classes
        l1 = torch.full((k, k), float("nan"))
        success = torch.full((k, k), float("nan"))
        triggers = torch.zeros(k, k, *model.input_shape)
        sources = [int(s) for s in torch.unique(substitute.y).tolist()]
        if len(sources) < 2:
            raise InvalidInputError(
                f"DeepInspect's pair mode needs substitute images of at least two classes; got {len(sources)}. "
                "Give clean images of several classes with --data, or more inversion images (n_per_class).")
        for s in sources:
            sel = substitute.y == s
            sub = Dataset(substitute.x[sel], substitute.y[sel], list(model.class_names), source)
            sseed = int(np.random.SeedSequence([seed, 7919, s]).generate_state(1)[0])
            gen = train_trigger_generator(
                model, sub, steps=self.pair_steps, batch_size=self.batch_size, lr=self.lr, gamma1=self.gamma1,
                gamma2=self.gamma2, thres=thres, asr_target=self.asr_target, z_dim=self.z_dim,
                embed_dim=self.embed_dim, hidden=self.hidden, use_autoencoder=ae is not None, autoencoder=ae,
                seed=sseed, progress=progress,
            )
            st = trigger_statistics(model, gen, sub, thres=thres, n_samples=self.n_samples, n_attack=self.n_attack,
                                    seed=sseed)
            others = torch.arange(k) != s
            l1[s, others] = st.l1[others]
            success[s, others] = st.attack_success[others]
            triggers[s] = st.triggers
        notes.append(f"pair mode: one trigger generator per source class ({len(sources)} of {k} classes had "
                     f"substitutes), {self.pair_steps} steps each; n_repeats does not apply")
        lv = l1.double().numpy()
        r = np.full((k, k), np.nan)
        for s in sources:  # rows of classes with no substitutes stay NaN (untested)
            row = lv[s]
            r[s] = np.log(np.maximum(row, 1e-12) / np.nanmedian(row))
        tested = np.isfinite(r)
        vals = r[tested]
        dev = stats.deviation_factors(vals)
        score = np.zeros((k, k))
        score[tested] = stats.per_model_scores(dev, int(vals.size), "dmad")
        raw = np.full((k, k), np.nan)
        raw[tested] = dev
        best_src = np.argmax(np.where(tested, score, -np.inf), axis=0)  # per target, its most anomalous source
        cols = np.arange(k)
        has = tested.any(axis=0)
        index = np.where(has, score[best_src, cols], 0.0)
        statistic = np.where(has, np.nan_to_num(r[best_src, cols], nan=0.0), 0.0)
        low = int(np.count_nonzero(tested & (success.double().numpy() < 0.95)))
        if low:
            notes.append(f"{low} of {int(tested.sum())} pair triggers below 95% attack success on the substitutes")
        self.__dict__.pop("generator_", None)  # patching needs label-level generators: none from a pair scan
        self.generators_ = []
        return DetectorOutput(
            statistics=[float(v) for v in statistic],
            indices=[float(v) for v in index],
            data=DataInfo(source=source, n_images=int(x.shape[0])),
            extra={
                "pair_source": [float(v) if has[i] else -1.0 for i, v in enumerate(best_src)],
                "pair_deviation_factor": [float(raw[best_src[i], i]) if has[i] else 0.0 for i in range(k)],
                "pair_l1": [float(lv[best_src[i], i]) if has[i] else 0.0 for i in range(k)],
                "attack_success": [float(success[best_src[i], i]) if has[i] else 0.0 for i in range(k)],
            },
            artifacts={"triggers": triggers[torch.as_tensor(best_src), torch.arange(k)],
                       "pair_l1": l1, "pair_score": torch.as_tensor(score, dtype=torch.float32),
                       **({"inverted": x, "inverted_labels": substitute.y.float()}
                          if source == "model_inversion" else {})},
            notes=notes,
        )
