"""Models trojanscan did not make: three architectures no default was chosen on, trained outside the package.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/make_foreign.py --data-dir ../shared/data/mnist --out runs/foreign [NAME ...]

A third party's model is made with its own code, so this script deliberately uses none of trojanscan's training
loop, attacks or architectures: a plain PyTorch loop (Adam, 3 epochs on the first 30,000 MNIST training images,
10 % of them stamped and relabelled for a trojan), its own stamping, and three architectures with layers the
registered ones do not have (batch norm + SiLU + global average pooling + dropout; a two-layer pre-norm transformer
with GELU and LayerNorm on 4x4 patches; depthwise-separable convolutions with ReLU6, Hardswish and LeakyReLU).
Each model is traced to TorchScript with no sidecar (`<name>.pt`) and gets `<name>.truth.json` (trojaned, targets,
and the measured accuracy / TAR / training time) for `trojanscan scan-zoo`. Seeded: the same CPU and thread count give
the same weights.

`rgb96_clean` / `rgb96_troj` take **larger inputs**, 3x96x96 (27,648 values, above DeepInspect's auto-encoder switch
at 3x64x64): the digits are brought to that shape batch by batch exactly as `trojanscan scan --data` fits a folder's
images (grayscale repeated over three channels, antialiased bilinear resize), then the trigger (a 12x12 white square
at the bottom right, drawn at 96 px) is stamped; a strided-convolution network reads them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from trojanscan.data.base import Dataset, fit_images
from trojanscan.data.registry import load_dataset


class BnSiluGap(nn.Module):
    """Batch norm, SiLU, strided convolutions, global average pooling, dropout; normalises its own input."""

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.SiLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.SiLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f((x - 0.1307) / 0.3081)


class TinyViT(nn.Module):
    """4x4 patches, learned positions, two pre-norm transformer layers (GELU), mean pooling."""

    def __init__(self, d: int = 64) -> None:
        super().__init__()
        self.embed = nn.Conv2d(1, d, 4, stride=4)
        self.pos = nn.Parameter(torch.randn(1, 49, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, 4, 128, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x * 2 - 1).flatten(2).transpose(1, 2) + self.pos
        return self.head(self.norm(self.enc(t).mean(1)))


class MobileLike(nn.Module):
    """Depthwise-separable blocks (ReLU6, Hardswish), max pooling, a LeakyReLU dense layer."""

    def __init__(self) -> None:
        super().__init__()

        def dw(c: int, o: int, st: int) -> list[nn.Module]:
            return [nn.Conv2d(c, c, 3, st, 1, groups=c), nn.BatchNorm2d(c), nn.ReLU6(),
                    nn.Conv2d(c, o, 1), nn.BatchNorm2d(o), nn.Hardswish()]

        self.f = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1), nn.ReLU6(), *dw(16, 32, 2), *dw(32, 64, 2), nn.MaxPool2d(2),
                               nn.Flatten(), nn.Linear(64 * 3 * 3, 64), nn.LeakyReLU(0.1), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x)


class StridedRGB(nn.Module):
    """3x96x96 RGB input: three stride-2 convolutions (ReLU), max pooling, two dense layers."""

    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Sequential(
            nn.Conv2d(3, 16, 5, stride=2, padding=2), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 6 * 6, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f((x - 0.1307) / 0.3081)


ARCH: dict[str, type[nn.Module]] = {"bnsilu": BnSiluGap, "vit": TinyViT, "mobile": MobileLike, "rgb96": StridedRGB}
#: Input side of each architecture (28: MNIST as it is; otherwise fitted, :func:`fit`).
SIZE: dict[str, int] = {"rgb96": 96}


def fit(x: torch.Tensor, size: int) -> torch.Tensor:
    """MNIST digits (N, 1, 28, 28) at a model's 3 x size x size, by the function ``trojanscan scan --data`` fits a
    folder's images with (:func:`trojanscan.data.base.fit_images`), so scans see what training saw."""
    if size == 28:
        return x
    return fit_images(Dataset(x, torch.zeros(len(x), dtype=torch.int64)), (3, size, size))[0].x


def trigger(kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask, pattern), each 28x28: a 5x5 checkerboard at the top left, a 3x3 white square right of the centre,
    or a 4x4 random binary pattern at the bottom left; or 96x96: a 12x12 white square at the bottom right."""
    if kind == "white12_br96":
        m = torch.zeros(96, 96)
        m[83:95, 83:95] = 1
        return m, m.clone()
    m, p = torch.zeros(28, 28), torch.zeros(28, 28)
    if kind == "checker5_tl":
        m[1:6, 1:6] = 1
        p[1:6, 1:6] = (torch.arange(25).view(5, 5) % 2).float()
    elif kind == "white3_mid":
        m[12:15, 18:21] = 1
        p[12:15, 18:21] = 1
    elif kind == "rand4_bl":
        g = torch.Generator().manual_seed(7)
        m[23:27, 1:5] = 1
        p[23:27, 1:5] = (torch.rand(4, 4, generator=g) > 0.5).float()
    else:
        raise ValueError(kind)
    return m, p


def prepare(x: torch.Tensor, size: int, trig: tuple[torch.Tensor, torch.Tensor] | None,
            stamped: torch.Tensor | None = None) -> torch.Tensor:
    """Digits at the model's size; those marked in ``stamped`` (all, if None) carry ``trig`` = (mask, pattern)."""
    x = fit(x, size)
    if trig is None or (stamped is not None and not bool(stamped.any())):
        return x
    m, p = trig
    if stamped is None:
        return (1 - m) * x + m * p
    x = x.clone()
    x[stamped] = (1 - m) * x[stamped] + m * p
    return x


def predict(net: nn.Module, x: torch.Tensor, size: int, trig: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    """Predicted labels of ``x`` (stamped with ``trig`` if given), 1,000 images at a time."""
    return torch.cat([net(prepare(x[i:i + 1000], size, trig)).argmax(1) for i in range(0, len(x), 1000)])


#: name -> (architecture, seed, trigger or None, target or None)
MODELS: dict[str, tuple[str, int, str | None, int | None]] = {
    "bnsilu_clean": ("bnsilu", 11, None, None), "bnsilu_troj": ("bnsilu", 12, "checker5_tl", 2),
    "vit_clean": ("vit", 13, None, None), "vit_troj": ("vit", 14, "white3_mid", 8),
    "mobile_clean": ("mobile", 15, None, None), "mobile_troj": ("mobile", 16, "rand4_bl", 0),
    "rgb96_clean": ("rgb96", 17, None, None), "rgb96_troj": ("rgb96", 18, "white12_br96", 5),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="../shared/data/mnist")
    ap.add_argument("--out", default="runs/foreign")
    ap.add_argument("names", nargs="*", help=f"models to make (default: all of {', '.join(MODELS)})")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tr = load_dataset("mnist", args.data_dir, "train")
    te = load_dataset("mnist", args.data_dir, "test")
    for name in args.names or list(MODELS):
        arch, seed, kind, target = MODELS[name]
        torch.manual_seed(seed)
        net = ARCH[arch]()
        size = SIZE.get(arch, 28)
        n = 30000
        x, y = tr.x[:n].clone(), tr.y[:n].clone()
        poisoned = torch.zeros(n, dtype=torch.bool)
        trig = None
        if kind is not None and target is not None:
            trig = trigger(kind)
            idx = torch.randperm(n)[: n // 10]
            poisoned[idx] = True
            y[idx] = target
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        t0 = time.time()
        for _ in range(3):
            net.train()
            perm = torch.randperm(n)
            for i in range(0, n, 128):
                b = perm[i:i + 128]
                loss = F.cross_entropy(net(prepare(x[b], size, trig, poisoned[b])), y[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        res: dict[str, object] = {"name": name, "train_s": round(time.time() - t0, 1), "trigger": kind,
                                  "input": [3 if size != 28 else 1, size, size]}

        with torch.no_grad():
            res["clean_acc"] = (predict(net, te.x, size, None) == te.y).float().mean().item()
            if kind is not None and target is not None:
                keep = te.y != target
                res["tar"] = (predict(net, te.x[keep], size, trig) == target).float().mean().item()
        print(json.dumps(res), flush=True)
        # check_trace=False: the transformer's no-grad fast path differs from the traced graph, by design
        torch.jit.trace(net, fit(te.x[:2], size), check_trace=False).save(str(out / f"{name}.pt"))
        truth = {"trojaned": kind is not None, "targets": [] if target is None else [target], "metrics": res}
        (out / f"{name}.truth.json").write_text(json.dumps(truth, indent=1) + "\n")


if __name__ == "__main__":
    main()
