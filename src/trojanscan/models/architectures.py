"""Architectures registry (torchvision-style ``register_model`` / ``build_architecture``).

Every architecture takes float32 NCHW input that has already been normalised by the
:class:`~trojanscan.models.Classifier` wrapper, and returns logits ``(N, num_classes)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from trojanscan.errors import InvalidInputError
from trojanscan.types import Shape3

Builder = Callable[[Shape3, int], nn.Module]
_REGISTRY: dict[str, Builder] = {}


def register_architecture(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder(input_shape, num_classes) -> nn.Module`` under ``name``."""

    def deco(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} is registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def list_architectures() -> list[str]:
    """Names of every registered architecture, sorted."""
    return sorted(_REGISTRY)


def build_architecture(name: str, input_shape: Shape3, num_classes: int) -> nn.Module:
    """Build a freshly initialised network (seed torch yourself for reproducible weights)."""
    if name not in _REGISTRY:
        raise InvalidInputError(
            f"unknown architecture {name!r}; known: {', '.join(list_architectures())}. "
            "Fix the 'architecture' field of the model's metadata or pass a TorchScript file."
        )
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise InvalidInputError(f"input_shape must be (C, H, W) of positive ints; got {input_shape!r}")
    if num_classes < 2:
        raise InvalidInputError(f"num_classes must be >= 2; got {num_classes}")
    return _REGISTRY[name](tuple(input_shape), num_classes)  # type: ignore[arg-type]


def _flat_size(features: nn.Module, input_shape: Shape3) -> int:
    with torch.no_grad():
        return int(features(torch.zeros(1, *input_shape)).numel())


class _Net(nn.Module):
    def __init__(self, features: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@register_architecture("mnist_cnn")
def mnist_cnn(input_shape: Shape3, num_classes: int) -> nn.Module:
    """The MNIST network of Neural Cleanse / DeepInspect: two conv+pool blocks, two dense layers."""
    c = input_shape[0]
    features = nn.Sequential(
        nn.Conv2d(c, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
    )
    n = _flat_size(features, input_shape)
    classifier = nn.Sequential(nn.Linear(n, 512), nn.ReLU(), nn.Linear(512, num_classes))
    return _Net(features, classifier)


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


@register_architecture("gtsrb_cnn")
def gtsrb_cnn(input_shape: Shape3, num_classes: int) -> nn.Module:
    """Six 3x3 conv layers in three blocks (as Neural Cleanse's GTSRB model), narrower for CPU training."""
    c = input_shape[0]
    features = nn.Sequential(
        *_conv_bn(c, 32), *_conv_bn(32, 32), nn.MaxPool2d(2),
        *_conv_bn(32, 64), *_conv_bn(64, 64), nn.MaxPool2d(2),
        *_conv_bn(64, 128), *_conv_bn(128, 128), nn.MaxPool2d(2),
    )
    n = _flat_size(features, input_shape)
    classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(n, 256), nn.ReLU(), nn.Linear(256, num_classes))
    return _Net(features, classifier)


class _Residual(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(ch, ch), *_conv_bn(ch, ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@register_architecture("cifar_resnet9")
def cifar_resnet9(input_shape: Shape3, num_classes: int) -> nn.Module:
    """A narrow ResNet-9 (Page, 2018 DAWNBench design at half width): >80% on CIFAR-10 in few epochs."""
    c = input_shape[0]
    features = nn.Sequential(
        *_conv_bn(c, 32),
        *_conv_bn(32, 64), nn.MaxPool2d(2), _Residual(64),
        *_conv_bn(64, 128), nn.MaxPool2d(2),
        *_conv_bn(128, 256), nn.MaxPool2d(2), _Residual(256),
        nn.AdaptiveMaxPool2d(1),
    )
    return _Net(features, nn.Linear(256, num_classes))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


@register_architecture("resnet18")
def resnet18(input_shape: Shape3, num_classes: int) -> nn.Module:
    """ResNet-18 (He et al. 2016); CIFAR-style 3x3 stem below 64 px, ImageNet-style 7x7 stem above."""
    c, h, _ = input_shape
    if h >= 64:
        stem: list[nn.Module] = [nn.Conv2d(c, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                 nn.MaxPool2d(3, 2, 1)]
    else:
        stem = [nn.Conv2d(c, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    layers: list[nn.Module] = []
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)]
        cin = cout
    features = nn.Sequential(*stem, *layers, nn.AdaptiveAvgPool2d(1))
    return _Net(features, nn.Linear(512, num_classes))


@register_architecture("tiny_cnn")
def tiny_cnn(input_shape: Shape3, num_classes: int) -> nn.Module:
    """A very small CNN for tests and the embedded demo (trains in seconds on a CPU)."""
    c = input_shape[0]
    features = nn.Sequential(
        nn.Conv2d(c, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    )
    n = _flat_size(features, input_shape)
    return _Net(features, nn.Sequential(nn.Linear(n, 64), nn.ReLU(), nn.Linear(64, num_classes)))


# ----------------------------------------------------------------------------- unlike the defaults
# Three architectures that no detector default was chosen on: the zoo's "other architectures" models
# (scripts/make_zoo.py --only mnist-arch) check that the detectors generalise beyond mnist_cnn / gtsrb_cnn.


@register_architecture("lenet5")
def lenet5(input_shape: Shape3, num_classes: int) -> nn.Module:
    """LeNet-5 (LeCun et al. 1998): tanh and average pooling, no ReLU anywhere (NeuronInspect's
    rectified pass has nothing to rectify and says so)."""
    c = input_shape[0]
    features = nn.Sequential(
        nn.Conv2d(c, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
    )
    n = _flat_size(features, input_shape)
    classifier = nn.Sequential(nn.Linear(n, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, num_classes))
    return _Net(features, classifier)


@register_architecture("mlp")
def mlp(input_shape: Shape3, num_classes: int) -> nn.Module:
    """A fully connected network (no convolution): two hidden ReLU layers of 256 and 128 units."""
    c, h, w = input_shape
    return _Net(nn.Identity(), nn.Sequential(nn.Linear(c * h * w, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                                             nn.Linear(128, num_classes)))


@register_architecture("resnet8")
def resnet8(input_shape: Shape3, num_classes: int) -> nn.Module:
    """A small ResNet (He et al. 2016): 3x3 stem of 16 channels, one basic block per stage (16, 32, 64
    channels; strides 1, 2, 2), batch norm, global average pooling."""
    c = input_shape[0]
    features = nn.Sequential(
        nn.Conv2d(c, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        _BasicBlock(16, 16, 1), _BasicBlock(16, 32, 2), _BasicBlock(32, 64, 2), nn.AdaptiveAvgPool2d(1),
    )
    return _Net(features, nn.Linear(64, num_classes))
