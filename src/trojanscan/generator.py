"""DeepInspect's conditional trigger generator (Chen et al., IJCAI 2019, §3.3 Eqs. 2–6, §4.2).

One conditional generator ``G(z, t)`` for all classes learns a distribution of *triggers*: additive
perturbations ``Δ = G(z, t)`` shaped like the input such that the frozen model predicts ``t`` on
``x + Δ`` for substitute images ``x`` (from model inversion, or clean data if the caller has some).
It is trained with the paper's loss (Eq. 6)::

    L = L_trigger + γ1·L_GAN + γ2·L_pert
    L_trigger = E[ nll(D(x + G(z, t)), t) ]                     (Eq. 3)
    L_GAN     = E[ mse(D_prob(x + G(z, t)), 1) ]                (Eq. 4)
    L_pert    = E[ max(0, ||G(z, t)||_1 − thres) ]              (Eq. 5)

``D`` is the queried model, used as a *fixed* discriminator (the paper's Fig. 3). ``D_prob`` is read
as the model's softmax probability of the conditioning class ``t``: the fixed discriminator's
"this is a genuine member of class t" score, so Eq. 4 is the least-squares GAN loss (Mao et al. 2017)
of a conditional generator against a fixed classifier-discriminator, ``(1 − p_t)²``. It complements
the NLL (which vanishes slowly once ``p_t`` is high) by weighting samples whose ``p_t`` is still low,
and it mirrors the ``1 − f(x; t)`` of model inversion (Eq. 1). (The other reading, an auxiliary trained
discriminator telling inverted images from triggered ones, would contradict the paper's "the
pre-trained model is deployed as the fixed discriminator" and would need data we do not have.)

The model is reached only through :meth:`Classifier.loss_and_input_grad`: the gradient of
``L_trigger + γ1·L_GAN`` w.r.t. the model's input ``x + Δ`` is back-propagated into ``G`` with
``x_adv.backward(grad)``, so a query-only (zeroth-order) estimator can later stand behind that seam.

High-dimensional inputs (§4.2): an auto-encoder trained on the substitute images gives an embedding
space; ``G`` then generates a latent code ``h`` and the frozen decoder, inserted between ``G`` and the
model, maps it to pixel space. The trigger is ``Δ = Dec(h) − Dec(0)`` so that the zero code is the zero
trigger (the paper leaves open how a decoder that reconstructs *images* yields an additive
*perturbation*; this difference is the choice documented in docs/methods/deep_inspect.md).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from trojanscan.data.base import Dataset
from trojanscan.errors import InvalidInputError
from trojanscan.models.classifier import Classifier
from trojanscan.types import ImageBatch, Shape3

# ----------------------------------------------------------------------------------------------- helpers


def l1_norm(delta: torch.Tensor) -> torch.Tensor:
    """``||Δ||_1`` per trigger (sum of absolute values over C, H, W), shape (N,)."""
    return delta.abs().flatten(1).sum(1)


def soft_hinge(delta: torch.Tensor, thres: float) -> torch.Tensor:
    """Eq. 5 per trigger: ``max(0, ||Δ||_1 − thres)``, shape (N,)."""
    return F.relu(l1_norm(delta) - thres)


def _stages(size: int, base: int = 8) -> int:
    """Number of ×2 up-sampling stages so that the starting map is at most ``base`` pixels wide."""
    return max(0, math.ceil(math.log2(max(size, 1) / base)))


def _check_positive_int(name: str, v: object, lo: int = 1) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise InvalidInputError(f"{name} must be an int >= {lo}; got {v!r}")
    return v


def _check_nonneg(name: str, v: object, *, positive: bool = False) -> float:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
    if not ok or float(v) < 0 or (positive and float(v) == 0):  # type: ignore[arg-type]
        kind = "a positive" if positive else "a non-negative"
        raise InvalidInputError(f"{name} must be {kind} finite number; got {v!r}")
    return float(v)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------- auto-encoder


class AutoEncoder(nn.Module):
    """Convolutional auto-encoder giving the embedding space of §4.2 (any ``(C, H, W)``).

    The encoder halves the resolution with stride-2 convolutions until the map is at most 8 pixels
    wide, then a linear layer gives a flat ``latent_dim`` code; the decoder mirrors it and ends in a
    sigmoid (images live in [0, 1]).
    """

    def __init__(self, input_shape: Shape3, latent_dim: int = 128, width: int = 32) -> None:
        super().__init__()
        c, h, w = input_shape
        self.input_shape: Shape3 = (int(c), int(h), int(w))
        self.latent_dim = int(latent_dim)
        s = _stages(max(h, w))
        chans = [min(width * 2**i, 256) for i in range(s + 1)]
        enc: list[nn.Module] = [nn.Conv2d(c, chans[0], 3, padding=1), nn.ReLU()]
        for i in range(s):
            enc += [nn.Conv2d(chans[i], chans[i + 1], 4, 2, 1), nn.ReLU()]
        self.h0, self.w0 = math.ceil(h / 2**s), math.ceil(w / 2**s)
        self.top = chans[-1]
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.LazyLinear(latent_dim))
        dec: list[nn.Module] = []
        for i in range(s, 0, -1):
            dec += [nn.ConvTranspose2d(chans[i], chans[i - 1], 4, 2, 1), nn.ReLU()]
        self.fc = nn.Linear(latent_dim, self.top * self.h0 * self.w0)
        self.decoder_body = nn.Sequential(*dec, nn.Conv2d(chans[0], c, 3, padding=1))
        with torch.no_grad():  # materialise the lazy layer with the padded input size
            self.encoder(torch.zeros(1, c, self.h0 * 2**s, self.w0 * 2**s))

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        s = _stages(max(self.input_shape[1:]))
        ph, pw = self.h0 * 2**s - x.shape[2], self.w0 * 2**s - x.shape[3]
        return F.pad(x, (0, pw, 0, ph)) if ph or pw else x

    def encode(self, x: ImageBatch) -> torch.Tensor:
        """Images (N, C, H, W) in [0, 1] -> codes (N, latent_dim)."""
        return self.encoder(self._pad(x))

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """Codes (N, latent_dim) -> images (N, C, H, W) in [0, 1]."""
        y = self.decoder_body(self.fc(code).view(-1, self.top, self.h0, self.w0))
        _, h, w = self.input_shape
        return torch.sigmoid(y[:, :, :h, :w])

    def forward(self, x: ImageBatch) -> torch.Tensor:
        return self.decode(self.encode(x))


def train_autoencoder(
    x: ImageBatch,
    *,
    latent_dim: int = 128,
    width: int = 32,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
) -> tuple[AutoEncoder, float]:
    """Fit an :class:`AutoEncoder` to ``x`` by MSE (§4.2); returns it (frozen, eval) and the final MSE."""
    _check_positive_int("latent_dim", latent_dim)
    _check_positive_int("width", width)
    _check_positive_int("steps", steps)
    _check_positive_int("batch_size", batch_size)
    _check_nonneg("lr", lr, positive=True)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ae = AutoEncoder((int(x.shape[1]), int(x.shape[2]), int(x.shape[3])), latent_dim, width)
    opt = torch.optim.Adam(ae.parameters(), lr=lr)
    n = x.shape[0]
    for _ in tqdm(range(steps), desc="auto-encoder", disable=not progress, leave=False):
        idx = torch.randint(n, (min(batch_size, n),), generator=g)
        loss = F.mse_loss(ae(x[idx]), x[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    ae.eval()
    for p in ae.parameters():
        p.requires_grad_(False)
    return ae, reconstruction_mse(ae, x)


@torch.no_grad()
def reconstruction_mse(ae: AutoEncoder, x: ImageBatch) -> float:
    """The auto-encoder's mean squared reconstruction error per value on ``x`` (in batches of 256)."""
    n = x.shape[0]
    return float(sum(F.mse_loss(ae(x[i : i + 256]), x[i : i + 256], reduction="sum") for i in range(0, n, 256)) / x.numel())


class _Decoded(nn.Module):
    """Frozen decoder as a trigger map: ``Δ = Dec(h) − Dec(0)`` (zero code -> zero trigger)."""

    def __init__(self, ae: AutoEncoder) -> None:
        super().__init__()
        self.ae = ae
        for p in self.ae.parameters():
            p.requires_grad_(False)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        zero = self.ae.decode(torch.zeros(1, code.shape[1], dtype=code.dtype))
        return self.ae.decode(code) - zero


# ----------------------------------------------------------------------------------------------- generator


@dataclass
class GeneratorLog:
    """What happened while training G: losses every ``log_every`` steps, the auto-encoder's fit, timing."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    l_trigger: list[float] = field(default_factory=list)
    l_gan: list[float] = field(default_factory=list)
    l_pert: list[float] = field(default_factory=list)
    attack_success: list[float] = field(default_factory=list)
    gamma2: list[float] = field(default_factory=list)
    autoencoder_mse: float | None = None
    seconds: float = 0.0
    queries: int = 0


class TriggerGenerator(nn.Module):
    """The conditional generator ``G(z, t)`` of DeepInspect (§3.3, Eq. 2; topology after Kang 2017's cGAN).

    ``z`` (N, z_dim) standard-normal noise is concatenated with a learned embedding of the target
    class ``t`` (N,) and passed through an MLP (two hidden ReLU layers of ``hidden`` units, as the
    fully connected cGAN generator of Kang 2017 that the paper cites for MNIST and GTSRB, without its
    batch norm so that a trigger does not depend on the rest of its batch). In pixel mode the output
    has ``C·H·W`` units and a ``tanh`` bounds the perturbation to [−1, 1]; in latent mode (an
    ``autoencoder`` given, §4.2) it is a ``latent_dim`` code for the frozen decoder.
    The last layer starts small so that training starts from (almost) no perturbation.
    After :func:`train_trigger_generator`, ``log_`` holds its :class:`GeneratorLog`.
    """

    log_: GeneratorLog

    def __init__(
        self,
        input_shape: Shape3,
        num_classes: int,
        *,
        z_dim: int = 100,
        embed_dim: int = 50,
        hidden: int = 256,
        autoencoder: AutoEncoder | None = None,
    ) -> None:
        super().__init__()
        c, h, w = (int(v) for v in input_shape)
        self.input_shape: Shape3 = (c, h, w)
        self.num_classes = int(num_classes)
        self.z_dim = int(z_dim)
        self.log_ = GeneratorLog()
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.decoder: _Decoded | None = _Decoded(autoencoder) if autoencoder is not None else None
        n_out = autoencoder.latent_dim if autoencoder is not None else c * h * w
        last = nn.Linear(hidden, n_out)
        self.body = nn.Sequential(
            nn.Linear(z_dim + embed_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), last
        )
        with torch.no_grad():
            last.weight.mul_(0.1)
            last.bias.zero_()

    @property
    def latent(self) -> bool:
        """True when G generates in an auto-encoder's embedding space (§4.2)."""
        return self.decoder is not None

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Triggers ``Δ = G(z, t)``, shape (N, C, H, W); ``z`` (N, z_dim), ``t`` (N,) int64 labels."""
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise InvalidInputError(f"z must have shape (N, {self.z_dim}); got {tuple(z.shape)}")
        if t.dim() != 1 or t.shape[0] != z.shape[0]:
            raise InvalidInputError(f"t must have shape ({z.shape[0]},) to match z; got {tuple(t.shape)}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_classes):
            raise InvalidInputError(f"t must hold labels in 0..{self.num_classes - 1}; got {t.unique().tolist()}")
        out = self.body(torch.cat([z, self.embed(t)], 1))
        if self.decoder is not None:
            return self.decoder(out)
        return torch.tanh(out).view(-1, *self.input_shape)

    def sample(self, t: int | torch.Tensor, n: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` triggers for each label in ``t`` (an int or a 1-D tensor), shape (len(t) * n, C, H, W).

        Rows are grouped by label: the first ``n`` rows are for ``t[0]``, and so on.
        """
        labels = torch.as_tensor([t] if isinstance(t, int) else t, dtype=torch.int64).reshape(-1)
        labels = labels.repeat_interleave(n)
        z = torch.randn(labels.shape[0], self.z_dim, generator=generator)
        return self(z, labels)


# ----------------------------------------------------------------------------------------------- training


def sample_pairs(
    labels: torch.Tensor, num_classes: int, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random (image index, target) pairs with the target drawn uniformly among the *other* classes.

    §4.2: "during the training of G, we randomly assign a valid output class as the target t"; an image
    already of class ``t`` teaches G nothing, so the target is drawn among the K − 1 other labels.
    """
    idx = torch.randint(labels.shape[0], (n,), generator=generator)
    shift = torch.randint(1, num_classes, (n,), generator=generator)
    return idx, (labels[idx] + shift) % num_classes


def train_trigger_generator(
    model: Classifier,
    data: Dataset,
    *,
    steps: int = 1000,
    batch_size: int = 64,
    lr: float = 2e-3,
    gamma1: float = 1.0,
    gamma2: float = 0.2,
    thres: float = 0.0,
    asr_target: float | None = 0.99,
    adapt_fraction: float = 0.75,
    z_dim: int = 100,
    embed_dim: int = 50,
    hidden: int = 256,
    use_autoencoder: bool = False,
    latent_dim: int = 128,
    ae_steps: int = 300,
    ae_width: int = 32,
    autoencoder: AutoEncoder | None = None,
    seed: int = 0,
    progress: bool = False,
) -> TriggerGenerator:
    """Train ``G(z, t)`` against the frozen ``model`` on ``data`` with Eq. 6 (see the module docstring).

    ``data.y`` is used as each image's current class (pass the model's predictions for inverted
    images; unknown labels, -1, are replaced by the model's predictions); targets are drawn among the
    other classes (:func:`sample_pairs`). ``γ2`` starts at ``gamma2`` and is adapted towards
    ``asr_target`` (None: fixed) as described in docs/methods/deep_inspect.md. ``thres`` is the
    absolute L1 threshold of the hinge (Eq. 5). The model must be in eval mode with frozen
    parameters (as :meth:`Detector.scan` leaves it); it is reached only through
    :meth:`Classifier.loss_and_input_grad`. Returns G in eval mode with ``G.log_`` (a :class:`GeneratorLog`)
    and, in latent mode, the auto-encoder inside ``G.decoder``. In latent mode an ``autoencoder`` already
    fitted to ``data.x`` (:func:`train_autoencoder`) is used as it is, so that several generators trained on the
    same images can share one (DeepInspect's repeats and pair mode do); without one, G fits its own
    (``latent_dim``, ``ae_width``, ``ae_steps``, ``seed``).
    """
    for name, v in (("steps", steps), ("batch_size", batch_size), ("z_dim", z_dim), ("embed_dim", embed_dim),
                    ("hidden", hidden), ("latent_dim", latent_dim), ("ae_steps", ae_steps), ("ae_width", ae_width)):
        _check_positive_int(name, v)
    _check_nonneg("lr", lr, positive=True)
    for name, f in (("gamma1", gamma1), ("gamma2", gamma2), ("thres", thres)):
        _check_nonneg(name, f)
    if asr_target is not None and not (_check_nonneg("asr_target", asr_target) < 1 and asr_target > 0):
        raise InvalidInputError(f"asr_target must be None or a number in (0, 1); got {asr_target!r}")
    if not (_check_nonneg("adapt_fraction", adapt_fraction) <= 1):
        raise InvalidInputError(f"adapt_fraction must be a number in [0, 1]; got {adapt_fraction!r}")
    if not isinstance(data, Dataset) or len(data) == 0:
        raise InvalidInputError("data must be a non-empty Dataset of substitute images (e.g. from model inversion)")
    if data.input_shape != model.input_shape:
        raise InvalidInputError(f"data images are {data.input_shape} but the model takes {model.input_shape}")
    k = model.num_classes
    log = GeneratorLog()
    t0 = time.perf_counter()
    q0 = model.queries
    g = torch.Generator().manual_seed(seed)
    ae: AutoEncoder | None = None
    if autoencoder is not None and not use_autoencoder:
        raise InvalidInputError("an autoencoder was given with use_autoencoder=False: pass use_autoencoder=True "
                                "to generate in its embedding space, or leave autoencoder out")
    if autoencoder is not None:
        if not isinstance(autoencoder, AutoEncoder) or autoencoder.input_shape != model.input_shape:
            raise InvalidInputError(f"autoencoder must be an AutoEncoder for inputs {model.input_shape}; got "
                                    f"{getattr(autoencoder, 'input_shape', type(autoencoder).__name__)}")
        ae, log.autoencoder_mse = autoencoder, reconstruction_mse(autoencoder, data.x)
    elif use_autoencoder:
        ae, log.autoencoder_mse = train_autoencoder(data.x, latent_dim=latent_dim, width=ae_width, steps=ae_steps,
                                                    seed=seed, progress=progress)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        gen = TriggerGenerator(model.input_shape, k, z_dim=z_dim, embed_dim=embed_dim, hidden=hidden, autoencoder=ae)
    params = [p for p in gen.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))
    # cosine learning-rate decay to 1 % of lr: the last steps settle the triggers instead of jittering
    # around the L1 kink (Adam's fixed step size leaves a noise floor on every pixel otherwise)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=0.01 * lr)
    x_all = data.x
    y_all = data.y if bool((data.y >= 0).all()) and int(data.y.max()) < k else model.predict(data.x)
    log_every = max(1, steps // 50)
    check_every = max(5, steps // 40)
    adapt_until = int(adapt_fraction * steps)
    win_hits, win_n = 0.0, 0
    run = {"loss": 0.0, "trig": 0.0, "gan": 0.0, "pert": 0.0, "asr": 0.0, "n": 0}
    gen.train()
    for step in tqdm(range(1, steps + 1), desc="trigger generator", disable=not progress, leave=False):
        idx, t = sample_pairs(y_all, k, batch_size, g)
        z = torch.randn(batch_size, z_dim, generator=g)
        delta = gen(z, t)
        x_adv = (x_all[idx] + delta).clamp(0.0, 1.0)
        box: dict[str, torch.Tensor] = {}

        def objective(logits: torch.Tensor, t: torch.Tensor = t, box: dict[str, torch.Tensor] = box) -> torch.Tensor:
            logp = torch.log_softmax(logits, 1).gather(1, t[:, None]).squeeze(1)
            l_trig = -logp.mean()  # Eq. 3
            l_gan = ((logp.exp() - 1.0) ** 2).mean()  # Eq. 4, D_prob = p(t | x + Δ)
            box["trig"], box["gan"] = l_trig.detach(), l_gan.detach()
            box["hit"] = (logits.argmax(1) == t).float().mean().detach()
            return l_trig + gamma1 * l_gan

        _, grad = model.loss_and_input_grad(x_adv, objective)
        l_pert = soft_hinge(delta, thres).mean()  # Eq. 5
        opt.zero_grad(set_to_none=True)
        # Eq. 6: back-propagate dL/d(x + Δ) through Δ into G, plus γ2 · L_pert
        ((x_adv * grad).sum() + gamma2 * l_pert).backward()
        opt.step()
        sched.step()
        run["trig"] += float(box["trig"])
        run["gan"] += float(box["gan"])
        run["pert"] += float(l_pert.detach())
        run["asr"] += float(box["hit"])
        run["loss"] += float(box["trig"]) + gamma1 * float(box["gan"]) + gamma2 * float(l_pert.detach())
        run["n"] += 1
        win_hits += float(box["hit"])
        win_n += 1
        if asr_target is not None and step % check_every == 0:
            # the paper selects γ2 so that G's triggers reach >= 95% attack success (§3.3); we do it
            # during training: raise γ2 while the success over the last window meets the target,
            # lower it otherwise; for the last (1 − adapt_fraction) of the steps it may only go down
            if win_hits / win_n < asr_target:
                gamma2 = gamma2 / 1.25**2
            elif step <= adapt_until:
                gamma2 = gamma2 * 1.25
            win_hits, win_n = 0.0, 0
        if step % log_every == 0 or step == steps:
            n = run["n"]
            log.steps.append(step)
            log.loss.append(run["loss"] / n)
            log.l_trigger.append(run["trig"] / n)
            log.l_gan.append(run["gan"] / n)
            log.l_pert.append(run["pert"] / n)
            log.attack_success.append(run["asr"] / n)
            log.gamma2.append(gamma2)
            run = dict.fromkeys(run, 0.0) | {"n": 0}
    gen.eval()
    for p in gen.parameters():
        p.requires_grad_(False)
    log.seconds = time.perf_counter() - t0
    log.queries = model.queries - q0
    gen.log_ = log
    return gen


# ----------------------------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class TriggerStatistics:
    """Per-class perturbation levels and attack success of G's triggers (DeepInspect §3.3, Fig. 4(b))."""

    hinge: torch.Tensor  # (K,) mean over z of max(0, ||Δ||_1 − thres)
    l1: torch.Tensor  # (K,) mean over z of ||Δ||_1
    attack_success: torch.Tensor  # (K,) fraction of (x, z) pairs, x of another class, predicted t
    triggers: torch.Tensor  # (K, C, H, W) mean trigger over the z samples


@torch.no_grad()
def trigger_statistics(
    model: Classifier,
    gen: TriggerGenerator,
    data: Dataset,
    *,
    thres: float,
    n_samples: int = 20,
    n_attack: int = 50,
    seed: int = 0,
    batch_size: int = 256,
) -> TriggerStatistics:
    """Sample ``n_samples`` triggers per class and measure them (all classes batched).

    Attack success of class ``t``: ``n_attack`` images of *other* classes from ``data`` (drawn at random,
    with replacement if fewer), each stamped additively (``clamp(x + Δ, 0, 1)``) with one of the sampled
    triggers, counted when the model predicts ``t``.
    """
    _check_positive_int("n_samples", n_samples)
    _check_positive_int("n_attack", n_attack)
    k = gen.num_classes
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(k)
    hinge = torch.zeros(k)
    l1 = torch.zeros(k)
    mean = torch.zeros(k, *gen.input_shape)
    chunk = max(1, batch_size // n_samples)
    for lo in range(0, k, chunk):
        lab = labels[lo : lo + chunk]
        d = gen.sample(lab, n_samples, g).view(len(lab), n_samples, *gen.input_shape)
        flat = d.flatten(0, 1)
        l1[lo : lo + chunk] = l1_norm(flat).view(len(lab), n_samples).mean(1)
        hinge[lo : lo + chunk] = soft_hinge(flat, thres).view(len(lab), n_samples).mean(1)
        mean[lo : lo + chunk] = d.mean(1)
    # sources per class: images whose label is not t (all images if every one is of class t)
    weights = (data.y[None, :] != labels[:, None]).float()
    weights[weights.sum(1) == 0] = 1.0
    sources = torch.multinomial(weights, n_attack, replacement=True, generator=g)  # (K, n_attack)
    success = torch.zeros(k)
    per = max(1, batch_size // n_attack)
    for lo in range(0, k, per):
        lab = labels[lo : lo + per].repeat_interleave(n_attack)
        idx = sources[lo : lo + per].reshape(-1)
        z = torch.randn(lab.shape[0], gen.z_dim, generator=g)
        x_adv = (data.x[idx] + gen(z, lab)).clamp(0.0, 1.0)
        success[lo : lo + per] = (model(x_adv).argmax(1) == lab).float().view(-1, n_attack).mean(1)
    return TriggerStatistics(hinge, l1, success, mean)
