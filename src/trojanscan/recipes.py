"""Training recipes: one seeded description of how a (clean or trojaned) model is made.

A :class:`TrainRecipe` names the dataset, architecture, attack and training settings; its
:meth:`~TrainRecipe.key` (a hash of the whole recipe) names cached models in the benchmarks, and
:func:`build_model` turns it into a trained :class:`~trojanscan.models.Classifier` plus metrics.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from trojanscan.attacks import build_attack, trojan_activation_rate
from trojanscan.attacks.poison import Attack
from trojanscan.data.base import Dataset
from trojanscan.errors import InvalidInputError
from trojanscan.models.architectures import build_architecture
from trojanscan.models.classifier import Classifier, clone_classifier
from trojanscan.training import BatchTransform, TrainConfig, accuracy, train

DATASETS = ("mnist", "gtsrb", "cifar10", "synthetic")

#: Per-dataset defaults: architecture, normalisation, training settings, augmentation.
DEFAULTS: dict[str, dict[str, Any]] = {
    "mnist": {"arch": "mnist_cnn", "mean": [0.1307], "std": [0.3081],
              "config": TrainConfig(epochs=4, batch_size=128, lr=1e-3), "augment": None},
    "gtsrb": {"arch": "gtsrb_cnn", "mean": [0.34, 0.31, 0.32], "std": [0.27, 0.26, 0.27],
              "config": TrainConfig(epochs=8, batch_size=128, lr=2e-3, schedule="onecycle"), "augment": "crop2"},
    "cifar10": {"arch": "cifar_resnet9", "mean": [0.4914, 0.4822, 0.4465], "std": [0.247, 0.243, 0.261],
                "config": TrainConfig(epochs=16, batch_size=256, lr=0.1, optimizer="sgd", weight_decay=5e-4,
                                      schedule="onecycle", label_smoothing=0.1), "augment": "crop4flip"},
    "synthetic": {"arch": "tiny_cnn", "mean": [0.5], "std": [0.5],
                  "config": TrainConfig(epochs=4, batch_size=64, lr=3e-3), "augment": None},
}


@dataclass(frozen=True)
class AttackSpec:
    """The attack part of a recipe (``None`` attack = a clean model)."""

    attack: str
    target: str = "0"
    trigger_size: int = 4
    position: str = "bottom-right"
    positions: tuple[str, ...] = ()
    alpha: float | None = None
    pattern: str = "square"
    poison_rate: float = 0.1


@dataclass(frozen=True)
class TrainRecipe:
    """Everything that determines a trained model (with the seed, it is reproducible).

    ``base`` (optional) makes a *poisoned fine-tune*: the model starts from the weights the ``base``
    recipe makes (a clean model, trained first or reused from a cache) and ``config`` is the
    fine-tuning schedule, on data the attack poisons as usual. It is how an attacker who holds a
    trained model implants a trojan cheaply, and how the benchmarks make many GTSRB variants on a CPU
    (see :func:`poison_finetune`). Without it the model is trained from scratch (the papers' setting).
    """

    dataset: str
    arch: str | None = None
    attack: AttackSpec | None = None
    config: TrainConfig | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    base: TrainRecipe | None = None

    def resolved(self) -> TrainRecipe:
        if self.dataset not in DEFAULTS:
            raise InvalidInputError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        d = DEFAULTS[self.dataset]
        r = replace(self, arch=self.arch or d["arch"], config=self.config or d["config"])
        if r.base is not None:
            b = r.base.resolved()
            if b.dataset != r.dataset or b.arch != r.arch:
                raise InvalidInputError(
                    f"a fine-tune must keep the base model's dataset and architecture: base is {b.dataset}/{b.arch},"
                    f" recipe is {r.dataset}/{r.arch}")
            r = replace(r, base=b)
        return r

    def to_dict(self) -> dict[str, Any]:
        r = self.resolved()
        d = asdict(replace(r, base=None))
        del d["base"]  # absent, not None, when there is no base: older recipes keep their keys
        if r.base is not None:
            d["base"] = r.base.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainRecipe:
        """The recipe :meth:`to_dict` wrote (e.g. a model's ``provenance["recipe"]``); same :meth:`key`."""
        try:
            atk = d.get("attack")
            return cls(
                dataset=d["dataset"], arch=d.get("arch"),
                attack=None if atk is None else AttackSpec(**{**atk, "positions": tuple(atk.get("positions", ()))}),
                config=None if d.get("config") is None else TrainConfig(**d["config"]),
                seed=d.get("seed", 0), extra=dict(d.get("extra") or {}),
                base=None if d.get("base") is None else cls.from_dict(d["base"]),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise InvalidInputError(f"not a training recipe ({e}); expected what TrainRecipe.to_dict writes") from e

    def key(self) -> str:
        """A short hash of the full recipe: the cache name of the model it makes."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def poison_finetune(base: TrainRecipe, attack: AttackSpec | None, *, epochs: int = 2, lr: float | None = None,
                    seed: int = 0) -> TrainRecipe:
    """A recipe that implants ``attack`` into the model ``base`` makes by fine-tuning on poisoned data
    (``attack=None``: a clean fine-tune).

    The schedule is the dataset's own (optimizer, batch size, augmentation) for ``epochs`` epochs at a
    quarter of its learning rate unless ``lr`` is given.
    """
    b = base.resolved()
    assert b.config is not None  # resolved() fills it
    cfg = replace(b.config, epochs=epochs, lr=lr if lr is not None else b.config.lr / 4)
    cfg.check()  # a bad epochs/lr fails here, before any base model is loaded or trained
    return TrainRecipe(b.dataset, arch=b.arch, attack=attack, config=cfg, seed=seed, base=b)


def _parse_position(p: str) -> str | tuple[int, int]:
    from trojanscan.triggers import parse_position

    return parse_position(p)


def make_attack(spec: AttackSpec, input_shape: tuple[int, int, int], num_classes: int, seed: int) -> Attack:
    """The :class:`Attack` a spec describes (TrojanNN: its trigger shape; the trigger is optimised later)."""
    name = "badnets" if spec.attack == "trojannn" else spec.attack
    atk = build_attack(
        name, input_shape, num_classes, target=spec.target, trigger_size=spec.trigger_size,
        position=_parse_position(spec.position), positions=[_parse_position(p) for p in spec.positions] or None,
        alpha=spec.alpha, pattern=spec.pattern, poison_rate=spec.poison_rate, seed=seed,
    )
    return replace(atk, name=spec.attack) if spec.attack == "trojannn" else atk


def _augment(name: str | None) -> BatchTransform | None:
    from trojanscan.data.augment import crop_flip

    if name is None:
        return None
    return {"crop2": crop_flip(2, flip=False), "crop4flip": crop_flip(4, flip=True)}[name]


@dataclass
class BuiltModel:
    """A trained model, its attack (ground truth, for benchmarks only) and its measured metrics."""

    model: Classifier
    attack: Attack | None
    metrics: dict[str, float]
    recipe: TrainRecipe
    #: Where it was trained: ``torch`` version, CPU ``threads`` and ``device``. Training is bit-reproducible from
    #: the recipe's seed only with the same three (CPU kernels split their reductions by thread count).
    environment: dict[str, Any] = field(default_factory=dict)

    def provenance(self) -> dict[str, Any]:
        prov = {"recipe": self.recipe.to_dict(), "key": self.recipe.key(), "metrics": self.metrics}
        return {**prov, "environment": self.environment} if self.environment else prov

    def truth(self) -> dict[str, Any]:
        """The ground-truth sidecar content: what the attack was (read only by benchmarks)."""
        base = {"trojaned": self.attack is not None, "recipe_key": self.recipe.key(), "metrics": self.metrics}
        if self.attack is None:
            return {**base, "targets": []}
        return {**base, **self.attack.to_dict()}


def training_environment(device: torch.device) -> dict[str, Any]:
    """What besides the recipe decides a trained model's exact weights: torch version, CPU threads, the CPU's
    vector instruction set as torch dispatches on it (``cpu_capability``: e.g. AVX2, AVX512; the same recipe and
    threads on an AVX2 and an AVX512 machine give different last digits), device."""
    return {"torch": torch.__version__.split("+")[0], "threads": torch.get_num_threads(),
            "cpu_capability": str(torch.backends.cpu.get_cpu_capability()), "device": device.type}


def build_model(
    recipe: TrainRecipe, train_data: Dataset, test_data: Dataset, *, progress: bool = True, log: Any = print,
    base_model: Classifier | None = None, device: str | torch.device | None = None,
) -> BuiltModel:
    """Train the model a recipe describes on ``train_data``; measure clean accuracy and TAR on ``test_data``.

    A recipe with a ``base`` starts from ``base_model`` (left untouched; it must be what ``recipe.base``
    makes) or, when none is given, from a base model trained here first. ``device``: where the network
    trains (default CPU; the data, the attack and the seeded draws stay on the CPU, see
    :class:`~trojanscan.models.Classifier`).
    """
    from trojanscan.models.classifier import resolve_device

    dev = resolve_device(device)
    r = recipe.resolved()
    assert r.arch is not None and r.config is not None  # resolved() fills them
    d = DEFAULTS[r.dataset]
    shape = train_data.input_shape
    k = max(train_data.num_classes, int(train_data.y.max()) + 1)
    if r.base is not None:
        if base_model is None:
            base_model = build_model(r.base, train_data, test_data, progress=progress, log=log, device=dev).model
        if base_model.input_shape != shape or base_model.num_classes != k:
            raise InvalidInputError(
                f"base model is {base_model.input_shape} with {base_model.num_classes} classes; the data is {shape}"
                f" with {k}")
        model = clone_classifier(base_model)
        model.metadata = {"architecture": r.arch}
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(r.seed)
            module = build_architecture(r.arch, shape, k)
        names = train_data.class_names if len(train_data.class_names) == k else [str(i) for i in range(k)]
        model = Classifier(module, shape, k, mean=d["mean"] if len(d["mean"]) == shape[0] else None,
                           std=d["std"] if len(d["std"]) == shape[0] else None, class_names=names,
                           metadata={"architecture": r.arch})
    model.to(dev)
    attack = make_attack(r.attack, shape, k, r.seed) if r.attack is not None else None

    def evaluate(m: Classifier) -> dict[str, float]:
        out = {"clean_acc": accuracy(m, test_data)}
        if attack is not None:
            out["tar"] = trojan_activation_rate(m, test_data, attack.trigger, attack.labels)
        return out

    t0 = time.perf_counter()
    if attack is not None and attack.name == "trojannn":
        from trojanscan.attacks.trojannn import trojannn_attack

        train(model, train_data, r.config, seed=r.seed, batch_transform=_augment(d["augment"]),
              evaluate=evaluate, progress=progress, log=log)
        attack = trojannn_attack(model, attack, seed=r.seed, progress=progress, log=log, evaluate=evaluate)
    else:
        transform = _augment(d["augment"])
        if attack is not None:
            transform = attack.batch_transform(train_data, r.seed, before=transform)
        train(model, train_data, r.config, seed=r.seed, batch_transform=transform, evaluate=evaluate,
              progress=progress, log=log)
    metrics = {**evaluate(model), "train_seconds": time.perf_counter() - t0}
    built = BuiltModel(model, attack, metrics, r, training_environment(dev))
    model.metadata["provenance"] = built.provenance()
    return built
