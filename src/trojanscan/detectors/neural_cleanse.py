"""Neural Cleanse (Wang et al., IEEE S&P 2019): reverse-engineer a minimal trigger per label.

For every label ``t`` the detector searches a mask ``m`` (H, W) and a pattern ``p`` (C, H, W) such that
stamping them turns clean images into ``t`` (paper §IV-B, Eq. 2 and Eq. 3)::

    x' = (1 - m) * x + m * p                                      (Eq. 2; trojanscan.triggers.stamp)
    min_{m, p}  CE(f(x'), t) + cost * ||m||_1                     (Eq. 3)

and flags labels whose best mask is abnormally *small* with the MAD anomaly index (§IV-C; left tail,
cutoff 2). Everything else follows the authors' public code (github bolunwang/backdoor,
``visualizer.py``):

- ``m = tanh(w_m) / (2 - eps) + 0.5`` and ``p = tanh(w_p) / (2 - eps) + 0.5`` (eps = Keras' 1e-7):
  both stay in [0, 1] without clipping (:func:`tanh_to_unit`). Initial values are uniform random.
- Adam, lr 0.1, betas (0.5, 0.9), Keras' update rule (:class:`KerasAdam`).
- An "epoch" is ``steps_per_epoch`` mini-batches; once per epoch the dynamic cost schedule
  (:class:`CostSchedule`) records the best mask and adapts ``cost``.
- The statistic of a label is the L1 norm of its best mask: the smallest-L1 mask among the epochs
  whose average attack success reached ``attack_succ_threshold``. A label that never reached it
  reports the L1 of its final mask (flagged in ``notes`` and in ``extra["reached_threshold"]``).

Two execution modes give the same statistic semantics: unbatched (labels one after another, as the
original) and batched (all labels at once: one mask tensor (K, H, W), one pattern tensor
(K, C, H, W), a vectorised cost schedule, and every mini-batch stamped with all K triggers in one
forward pass). Because the loss is a sum of per-label terms and Adam is element-wise, batching changes
the arithmetic grouping only, not the optimisation problem (see docs/methods/neural_cleanse.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from trojanscan import stats
from trojanscan.data.base import Dataset
from trojanscan.detectors.base import Detector, DetectorOutput, register_detector
from trojanscan.errors import InvalidInputError
from trojanscan.models.classifier import Classifier
from trojanscan.report.scan_report import ClassResult, DataInfo
from trojanscan.triggers import stamp

#: ``K.epsilon()`` of Keras, the ``epsilon`` of the original tanh parametrisation and of its Adam.
EPSILON = 1e-7
#: Batched mode's default memory bound: input values (images x C x H x W) stamped per forward pass.
PASS_VALUES = 2**23


# ----------------------------------------------------------------------------- parametrisation
def tanh_to_unit(w: torch.Tensor, eps: float = EPSILON) -> torch.Tensor:
    """``tanh(w) / (2 - eps) + 0.5``: the original code's map from R to (0, 1) for mask and pattern."""
    return torch.tanh(w) / (2.0 - eps) + 0.5


def unit_to_tanh(x: torch.Tensor, eps: float = EPSILON) -> torch.Tensor:
    """Inverse of :func:`tanh_to_unit` (``arctanh((x - 0.5) * (2 - eps))``, as ``reset_state``)."""
    return torch.atanh((x - 0.5) * (2.0 - eps))


# ----------------------------------------------------------------------------- optimiser
class KerasAdam:
    """Adam as Keras 2 implements it (the original's optimiser), one step count per row (label).

    ``lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t)``; ``w -= lr_t * m / (sqrt(v) + eps)``. Rows are labels:
    :meth:`step` updates only the given rows, so labels that stopped early keep their values and state
    (the per-label optimiser reset of ``Visualizer.reset_opt``). Element-wise, so optimising K labels in
    one tensor is the same as K separate optimisers.
    """

    def __init__(self, params: Sequence[torch.Tensor], lr: float, betas: tuple[float, float], eps: float = EPSILON) -> None:
        self.params = list(params)
        self.lr = float(lr)
        self.b1, self.b2 = float(betas[0]), float(betas[1])
        self.eps = float(eps)
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = torch.zeros(self.params[0].shape[0], dtype=torch.float64)

    @torch.no_grad()
    def step(self, rows: torch.Tensor, grads: Sequence[torch.Tensor]) -> None:
        """Apply one update to ``rows`` (int64 indices) with ``grads`` (one tensor per param, rows only)."""
        self.t[rows] += 1
        t = self.t[rows]
        lr_t = (self.lr * torch.sqrt(1.0 - self.b2**t) / (1.0 - self.b1**t)).float()
        for p, m, v, g in zip(self.params, self.m, self.v, grads, strict=True):
            m_t = self.b1 * m[rows] + (1.0 - self.b1) * g
            v_t = self.b2 * v[rows] + (1.0 - self.b2) * g * g
            m[rows] = m_t
            v[rows] = v_t
            shape = (-1,) + (1,) * (p.dim() - 1)
            p[rows] = p[rows] - lr_t.view(shape) * m_t / (v_t.sqrt() + self.eps)


# ----------------------------------------------------------------------------- cost schedule
class CostSchedule:
    """The original dynamic cost schedule and early stop (``Visualizer.visualize``), vectorised over labels.

    Call :meth:`step` once per epoch with each label's average attack success and average mask L1 over
    the epoch. In order, per label that has not stopped:

    1. **best**: if ``acc >= threshold`` and ``reg < reg_best``: ``reg_best = reg`` (the caller saves the mask).
    2. **early stop** (if enabled): once ``reg_best`` is finite, ``early_stop_counter`` counts consecutive
       epochs with ``reg_best >= early_stop_threshold * reg_best_previous`` (< 1 % improvement); the label
       stops when that reaches ``early_stop_patience`` *and* the cost has gone both up and down since it was
       set (``up_flag and down_flag``). A stopping label skips steps 3-4 (the original ``break``).
    3. **set**: while ``cost == 0``, ``patience`` consecutive successful epochs set ``cost = init_cost`` and
       reset the up/down counters and flags.
    4. **up/down**: ``patience`` consecutive successful epochs multiply the cost by ``multiplier``;
       ``patience`` consecutive failing epochs divide it by ``multiplier ** 1.5``.

    Deviation: the up step is capped at ``cost_max`` (the original has no ceiling; see the docs).
    All state is held in tensors of shape (n,), so one object serves one label (unbatched) or K (batched).
    """

    def __init__(
        self,
        n: int,
        *,
        init_cost: float = 1e-3,
        threshold: float = 0.99,
        patience: int = 5,
        multiplier: float = 1.5,
        cost_max: float = 1e3,
        early_stop: bool = True,
        early_stop_threshold: float = 0.99,
        early_stop_patience: int = 10,
    ) -> None:
        self.init_cost = float(init_cost)
        self.threshold = float(threshold)
        self.patience = int(patience)
        self.multiplier_up = float(multiplier)
        self.multiplier_down = float(multiplier) ** 1.5
        self.cost_max = float(cost_max)
        self.early_stop = bool(early_stop)
        self.early_stop_threshold = float(early_stop_threshold)
        self.early_stop_patience = int(early_stop_patience)
        zi = torch.zeros(n, dtype=torch.int64)
        zb = torch.zeros(n, dtype=torch.bool)
        self.cost = torch.zeros(n, dtype=torch.float64)  # RESET_COST_TO_ZERO = True in the original
        self.set_counter, self.up_counter, self.down_counter = zi.clone(), zi.clone(), zi.clone()
        self.up_flag, self.down_flag = zb.clone(), zb.clone()
        self.reg_best = torch.full((n,), math.inf, dtype=torch.float64)
        self.early_stop_counter = zi.clone()
        self.early_stop_reg_best = torch.full((n,), math.inf, dtype=torch.float64)
        self.stopped = zb.clone()
        self.epochs = zi.clone()

    @property
    def active(self) -> torch.Tensor:
        """Labels still optimising (bool, (n,))."""
        return ~self.stopped

    def step(self, acc: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
        """Advance one epoch; return which labels found a new best mask (bool, (n,)). Stopped labels are left as they are."""
        acc = acc.to(torch.float64)
        reg = reg.to(torch.float64)
        act = ~self.stopped
        succ = acc >= self.threshold
        # 1. best mask so far
        new_best = act & succ & (reg < self.reg_best)
        self.reg_best = torch.where(new_best, reg, self.reg_best)
        # 2. early stop
        stop_now = torch.zeros_like(act)
        if self.early_stop:
            found = act & torch.isfinite(self.reg_best)
            no_gain = self.reg_best >= self.early_stop_threshold * self.early_stop_reg_best
            self.early_stop_counter = torch.where(
                found, torch.where(no_gain, self.early_stop_counter + 1, 0), self.early_stop_counter
            )
            self.early_stop_reg_best = torch.where(
                act, torch.minimum(self.reg_best, self.early_stop_reg_best), self.early_stop_reg_best
            )
            stop_now = act & self.up_flag & self.down_flag & (self.early_stop_counter >= self.early_stop_patience)
        upd = act & ~stop_now
        # 3. set the cost once the attack succeeds with cost 0
        set_inc = upd & (self.cost == 0) & succ
        self.set_counter = torch.where(upd, torch.where(set_inc, self.set_counter + 1, 0), self.set_counter)
        do_set = set_inc & (self.set_counter >= self.patience)
        self.cost = torch.where(do_set, torch.full_like(self.cost, self.init_cost), self.cost)
        self.up_counter = torch.where(do_set, 0, self.up_counter)
        self.down_counter = torch.where(do_set, 0, self.down_counter)
        self.up_flag = self.up_flag & ~do_set
        self.down_flag = self.down_flag & ~do_set
        # 4. adapt the cost
        self.up_counter = torch.where(upd, torch.where(succ, self.up_counter + 1, 0), self.up_counter)
        self.down_counter = torch.where(upd, torch.where(succ, 0, self.down_counter + 1), self.down_counter)
        go_up = upd & (self.up_counter >= self.patience)
        go_down = upd & ~go_up & (self.down_counter >= self.patience)
        self.up_counter = torch.where(go_up, 0, self.up_counter)
        self.down_counter = torch.where(go_down, 0, self.down_counter)
        self.cost = torch.where(go_up, torch.clamp(self.cost * self.multiplier_up, max=self.cost_max), self.cost)
        self.cost = torch.where(go_down, self.cost / self.multiplier_down, self.cost)
        self.up_flag = self.up_flag | go_up
        self.down_flag = self.down_flag | go_down
        self.stopped = self.stopped | stop_now
        self.epochs = self.epochs + act.long()
        return new_best


# ----------------------------------------------------------------------------- data stream
def _batch_stream(n: int, batch: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless shuffled mini-batches of indices into ``n`` images (reshuffled every pass, as Keras' ``flow``)."""
    g = torch.Generator().manual_seed(seed)
    buf = torch.empty(0, dtype=torch.int64)
    while True:
        while buf.numel() < batch:
            buf = torch.cat([buf, torch.randperm(n, generator=g)])
        yield buf[:batch]
        buf = buf[batch:]


class _PerLabelCE:
    """Eq. 3's data term for L labels at once: ``sum_l mean_b CE(f(x'_{l,b}), t_l)``; keeps the logits."""

    def __init__(self, targets: torch.Tensor, n_labels: int) -> None:
        self.targets = targets
        self.n_labels = n_labels
        self.logits = torch.empty(0)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        self.logits = logits.detach()
        return F.cross_entropy(logits, self.targets, reduction="none").view(self.n_labels, -1).mean(1).sum()


def _check(ok: bool, name: str, constraint: str, value: object, fix: str = "") -> None:
    if not ok:
        raise InvalidInputError(
            f"The {name!r} parameter of NeuralCleanse must be {constraint}; got {value!r}." + (f" {fix}" if fix else "")
        )


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


@register_detector
class NeuralCleanse(Detector):
    """Neural Cleanse (Wang et al. 2019): per-label minimal trigger reverse engineering + MAD outlier test.

    Statistic per class: the L1 norm of the best reversed mask (small = suspicious). Defaults and the
    original's values are listed in docs/methods/neural_cleanse.md.

    Parameters
    ----------
    init_cost: weight of the mask L1 once the schedule sets it (original 1e-3).
    lr, betas: Adam learning rate and betas (original 0.1, (0.5, 0.9)).
    epochs: maximum epochs per label (original ``steps`` = 1000).
    steps_per_epoch: mini-batches per epoch (original ``mini_batch`` = 1000 // 32 = 31).
    batch_size: images per mini-batch (original 32).
    attack_succ_threshold: attack success needed to record a mask (original 0.99).
    patience: epochs before the cost is set / raised / lowered (original GTSRB example 5).
    cost_multiplier: up factor; down factor is its 1.5 power (original 1.5 class default).
    cost_max: ceiling on the cost (not in the original, which can overflow).
    early_stop, early_stop_threshold, early_stop_patience: early stop (original True, 0.99, see docs).
    batched: optimise all labels at once (same semantics, see module docstring).
    max_images_per_pass: in batched mode, at most this many stamped images per forward pass
        (labels go in groups of ``max(1, max_images_per_pass // batch_size)``); ``None``: as many images
        as hold ``PASS_VALUES`` (2**23) input values, e.g. 10,700 MNIST or 2,730 GTSRB images, 55 at 224x224x3.
    inversion_per_class: model-inversion images per class when no clean data is given.
    cutoff, alpha: MAD anomaly-index cutoff (2.0) or significance level overriding it.
    familywise: the per-model cutoff for the number of classes (stats.familywise_cutoff; not in the paper).
    scale: ``"raw"`` (the paper: MAD of the mask L1 norms) or ``"log"`` (MAD of their logarithms,
        stats.on_scale; not in the paper).
    """

    name: ClassVar[str] = "neural_cleanse"
    test: ClassVar[str] = "mad"

    def __init__(
        self,
        *,
        init_cost: float = 1e-3,
        lr: float = 0.1,
        betas: tuple[float, float] = (0.5, 0.9),
        epochs: int = 30,
        steps_per_epoch: int = 31,
        batch_size: int = 32,
        attack_succ_threshold: float = 0.99,
        patience: int = 5,
        cost_multiplier: float = 1.5,
        cost_max: float = 1e3,
        early_stop: bool = True,
        early_stop_threshold: float = 0.99,
        early_stop_patience: int = 10,
        batched: bool = True,
        max_images_per_pass: int | None = None,
        inversion_per_class: int = 10,
        cutoff: float = 2.0,
        alpha: float | None = None,
        familywise: bool = False,
        scale: str = "raw",
    ) -> None:
        self.init_cost = init_cost
        self.lr = lr
        self.betas = betas
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.batch_size = batch_size
        self.attack_succ_threshold = attack_succ_threshold
        self.patience = patience
        self.cost_multiplier = cost_multiplier
        self.cost_max = cost_max
        self.early_stop = early_stop
        self.early_stop_threshold = early_stop_threshold
        self.early_stop_patience = early_stop_patience
        self.batched = batched
        self.max_images_per_pass = max_images_per_pass
        self.inversion_per_class = inversion_per_class
        self.cutoff = cutoff
        self.alpha = alpha
        self.familywise = familywise
        self.scale = scale

    # ------------------------------------------------------------------ validation
    @classmethod
    def statistics_on_scale(cls, classes: Sequence[ClassResult], scale: str) -> list[float]:
        """The mask L1 norms, on either scale (the log is taken by the test, not stored)."""
        stats.check_scale(scale, cls.__name__)
        return [float(c.extra.get("mask_l1", c.statistic)) for c in classes]

    def _check_params(self) -> None:
        _check(_is_num(self.init_cost) and self.init_cost > 0, "init_cost", "a positive finite number", self.init_cost,
               "The original uses 1e-3.")
        _check(_is_num(self.lr) and self.lr > 0, "lr", "a positive finite number", self.lr, "The original uses 0.1.")
        b = self.betas
        _check(isinstance(b, tuple | list) and len(b) == 2 and all(_is_num(x) and 0 <= x < 1 for x in b),
               "betas", "a pair of numbers in [0, 1)", b, "The original uses (0.5, 0.9).")
        for name in ("epochs", "steps_per_epoch", "batch_size", "patience", "early_stop_patience",
                     "max_images_per_pass", "inversion_per_class"):
            v = getattr(self, name)
            if name == "max_images_per_pass" and v is None:
                continue
            _check(_is_int(v) and v >= 1, name, "an int >= 1" + (" or None" if name == "max_images_per_pass" else ""), v)
        t = self.attack_succ_threshold
        _check(_is_num(t) and 0 < t <= 1, "attack_succ_threshold", "a number in (0, 1]", t, "The original uses 0.99.")
        _check(_is_num(self.cost_multiplier) and self.cost_multiplier > 1, "cost_multiplier", "a number > 1",
               self.cost_multiplier, "The original uses 1.5.")
        _check(_is_num(self.cost_max) and self.cost_max >= self.init_cost, "cost_max",
               f"a finite number >= init_cost ({self.init_cost!r})", self.cost_max, "The default is 1e3.")
        _check(isinstance(self.early_stop, bool), "early_stop", "a bool", self.early_stop)
        e = self.early_stop_threshold
        _check(_is_num(e) and 0 < e <= 1, "early_stop_threshold", "a number in (0, 1]", e, "The original uses 0.99.")
        _check(isinstance(self.batched, bool), "batched", "a bool", self.batched)

    # ------------------------------------------------------------------ the scan
    def _run(self, model: Classifier, data: Dataset | None, *, seed: int, progress: bool) -> DetectorOutput:
        """Reverse-engineer one trigger per label (§IV-B) and return the L1 norms of the masks."""
        notes: list[str] = []
        if data is None:
            from trojanscan.inversion import invert

            inv = invert(model, n_per_class=self.inversion_per_class, seed=seed, progress=progress)
            x = inv.data.x
            info = DataInfo("model_inversion", int(x.shape[0]))
            notes.append(f"no clean data: optimised on {x.shape[0]} model-inversion images "
                         f"({self.inversion_per_class} per class, trojanscan.inversion.invert)")
        else:
            x = data.x
            info = DataInfo("clean_data", int(x.shape[0]))
        k = model.num_classes
        c, h, w = model.input_shape
        g = torch.Generator().manual_seed(seed)
        # random initial mask and pattern in [0, 1) (gtsrb_visualize_example.py), drawn for all labels up front
        mask0 = torch.rand((k, h, w), generator=g)
        pattern0 = torch.rand((k, c, h, w), generator=g)
        batch = min(self.batch_size, int(x.shape[0]))
        stream_seed = int(torch.randint(0, 2**62, (1,), generator=g))
        if self.batched:
            per_pass = max(1, self._images_per_pass(model) // batch)
            groups = [list(range(i, min(i + per_pass, k))) for i in range(0, k, per_pass)]
        else:
            groups = [[i] for i in range(k)]
        masks = torch.zeros((k, h, w))
        patterns = torch.zeros((k, c, h, w))
        reached = torch.zeros(k, dtype=torch.bool)
        epochs_run = torch.zeros(k)
        final_cost = torch.zeros(k)
        bar = tqdm(total=k * self.epochs, desc="neural cleanse", unit="label-epoch", disable=not progress, leave=False)
        try:
            for labels in groups:
                idx = torch.tensor(labels)
                res = self._reverse(model, x, idx, mask0[idx], pattern0[idx], batch, stream_seed, bar)
                masks[idx], patterns[idx], reached[idx] = res[0], res[1], res[2]
                epochs_run[idx], final_cost[idx] = res[3], res[4]
        finally:
            bar.close()
        # success of the reported triggers, re-measured on a fixed sample of (at most) one epoch of images
        n_eval = min(int(x.shape[0]), self.steps_per_epoch * self.batch_size)
        x_eval = x[torch.randperm(int(x.shape[0]), generator=g)[:n_eval]]
        success = self._attack_success(model, x_eval, masks, patterns)
        l1 = masks.abs().sum((1, 2))
        missed = [i for i in range(k) if not bool(reached[i])]
        if missed:
            notes.append(
                f"labels {missed} never reached attack success {self.attack_succ_threshold} in an epoch: "
                "their statistic is the L1 norm of the final mask (the original's fallback)"
            )
        return DetectorOutput(
            statistics=[float(v) for v in l1],
            data=info,
            extra={
                "attack_success": [float(v) for v in success],
                "mask_l1": [float(v) for v in l1],
                "reached_threshold": [float(v) for v in reached],
                "epochs": [float(v) for v in epochs_run],
                "final_cost": [float(v) for v in final_cost],
            },
            artifacts={"masks": masks.float().contiguous(), "patterns": patterns.float().contiguous()},
            notes=notes,
        )

    def _reverse(
        self,
        model: Classifier,
        x: torch.Tensor,
        labels: torch.Tensor,
        mask_init: torch.Tensor,
        pattern_init: torch.Tensor,
        batch: int,
        stream_seed: int,
        bar: tqdm,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Optimise Eq. 3 for ``labels`` (L,) together; return best masks, patterns, reached, epochs, costs.

        Every label sees the same stream of mini-batches (seeded by ``stream_seed``) whether it is optimised
        alone or with others, so batched and unbatched runs solve identical problems.
        """
        n_lab = int(labels.numel())
        mask_w = unit_to_tanh(mask_init.clamp(0, 1))
        pattern_w = unit_to_tanh(pattern_init.clamp(0, 1))
        opt = KerasAdam([mask_w, pattern_w], self.lr, (float(self.betas[0]), float(self.betas[1])))
        sched = CostSchedule(
            n_lab, init_cost=self.init_cost, threshold=self.attack_succ_threshold, patience=self.patience,
            multiplier=self.cost_multiplier, cost_max=self.cost_max, early_stop=self.early_stop,
            early_stop_threshold=self.early_stop_threshold, early_stop_patience=self.early_stop_patience,
        )
        best_mask = tanh_to_unit(mask_w)
        best_pattern = tanh_to_unit(pattern_w)
        stream = _batch_stream(int(x.shape[0]), batch, stream_seed)
        for _ in range(self.epochs):
            act = torch.nonzero(sched.active).squeeze(1)
            if act.numel() == 0:
                break
            n_act = int(act.numel())
            targets = labels[act].repeat_interleave(batch)
            cost = sched.cost[act].float()
            hits = torch.zeros(n_act)
            regs = torch.zeros(n_act, dtype=torch.float64)
            for _ in range(self.steps_per_epoch):
                xb = x[next(stream)]
                mw = mask_w[act].requires_grad_(True)
                pw = pattern_w[act].requires_grad_(True)
                with torch.enable_grad():
                    m = tanh_to_unit(mw)
                    p = tanh_to_unit(pw)
                    # Eq. 2 for every (label, image) pair: (A, B, C, H, W) -> (A * B, C, H, W)
                    xs = stamp(xb.unsqueeze(0), m[:, None, None], p.unsqueeze(1)).reshape(n_act * batch, *x.shape[1:])
                    ce = _PerLabelCE(targets, n_act)
                    _, gx = model.loss_and_input_grad(xs.detach(), ce)
                    reg = m.abs().sum((1, 2))
                    total = (xs * gx).sum() + (cost * reg).sum()
                    g_m, g_p = torch.autograd.grad(total, [mw, pw])
                opt.step(act, [g_m, g_p])
                hits += (ce.logits.argmax(1) == targets).view(n_act, batch).float().sum(1)
                regs += reg.detach().double()
            acc = torch.zeros(n_lab)
            reg_avg = torch.full((n_lab,), math.inf, dtype=torch.float64)
            acc[act] = hits / (self.steps_per_epoch * batch)
            reg_avg[act] = regs / self.steps_per_epoch
            new_best = sched.step(acc, reg_avg)
            if bool(new_best.any()):
                with torch.no_grad():
                    best_mask[new_best] = tanh_to_unit(mask_w[new_best])
                    best_pattern[new_best] = tanh_to_unit(pattern_w[new_best])
            bar.update(n_act)
        reached = torch.isfinite(sched.reg_best)
        with torch.no_grad():  # never reached: the final mask (the original's ``mask_best is None`` branch)
            best_mask[~reached] = tanh_to_unit(mask_w[~reached])
            best_pattern[~reached] = tanh_to_unit(pattern_w[~reached])
        bar.update(int((self.epochs - sched.epochs).sum()))
        return best_mask, best_pattern, reached, sched.epochs.float(), sched.cost.float()

    def _images_per_pass(self, model: Classifier) -> int:
        if self.max_images_per_pass is not None:
            return int(self.max_images_per_pass)
        c, h, w = model.input_shape
        return max(1, PASS_VALUES // (c * h * w))

    @torch.no_grad()
    def _attack_success(self, model: Classifier, x: torch.Tensor, masks: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
        """Fraction of ``x`` that each label's trigger sends to that label (stamped per Eq. 2)."""
        k, n = int(masks.shape[0]), int(x.shape[0])
        per_pass = max(1, self._images_per_pass(model) // max(n, 1)) if self.batched else 1
        out = torch.zeros(k)
        for i in range(0, k, per_pass):
            j = min(i + per_pass, k)
            xs = stamp(x.unsqueeze(0), masks[i:j, None, None], patterns[i:j].unsqueeze(1)).reshape(-1, *x.shape[1:])
            pred = model.predict(xs, batch_size=max(n, 512)).view(j - i, n)
            out[i:j] = (pred == torch.arange(i, j).unsqueeze(1)).float().mean(1)
        return out
