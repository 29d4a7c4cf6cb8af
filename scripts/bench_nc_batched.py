"""Time Neural Cleanse batched vs unbatched on the same MNIST-like model and data (docs/methods/neural_cleanse.md).

    .venv/bin/python scripts/bench_nc_batched.py [--model runs/models/mnist_badnets4_t5.safetensors]
        [--data-dir ../shared/data/mnist] [--n-images 1000] [--epochs 60] [--steps-per-epoch 31] [--threads 2]

Uses ``--model`` when it exists; otherwise trains a BadNets MNIST model (4x4 white square -> 5) on a
subset of MNIST (or, without MNIST files, on synthetic digits) and caches it under runs/nc_bench/.
Prints the wall-clock and CPU time of each mode, their ratio, and both sets of per-class statistics
and anomaly indices side by side. Both modes run on the same seed, so they see the same initial
triggers and the same mini-batches.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from trojanscan.data.base import Dataset
from trojanscan.detectors.neural_cleanse import NeuralCleanse
from trojanscan.models.classifier import Classifier
from trojanscan.models.io import load_model, save_model
from trojanscan.report.scan_report import ScanReport


def _mnist(data_dir: str, split: str) -> Dataset | None:
    try:
        from trojanscan.data.registry import load_dataset

        return load_dataset("mnist", data_dir, split)
    except Exception as exc:  # no MNIST files: fall back to synthetic digits
        print(f"# MNIST not readable from {data_dir!r} ({type(exc).__name__}: {exc}); using synthetic digits")
        return None


def _model(path: str, data_dir: str) -> tuple[Classifier, str]:
    if Path(path).exists():
        return load_model(path), path
    cache = Path("runs/nc_bench/mnist_badnets4_t5_small.safetensors")
    if cache.exists():
        return load_model(cache), str(cache)
    from trojanscan.recipes import AttackSpec, TrainRecipe, build_model
    from trojanscan.training import TrainConfig

    train = _mnist(data_dir, "train")
    test = _mnist(data_dir, "test")
    if train is None or test is None:
        from trojanscan.data.synthetic import synthetic_digits, train_test_split

        train, test = train_test_split(synthetic_digits(6000, seed=0), 0.2, seed=0)
        recipe = TrainRecipe("synthetic", attack=AttackSpec("badnets", target="5"), seed=0)
    else:
        g = torch.Generator().manual_seed(0)
        train = train.subset(torch.randperm(len(train), generator=g)[:20000])
        test = test.subset(torch.arange(2000))
        recipe = TrainRecipe("mnist", attack=AttackSpec("badnets", target="5"),
                             config=TrainConfig(epochs=2, batch_size=128, lr=1e-3), seed=0)
    t0 = time.perf_counter()
    built = build_model(recipe, train, test, progress=False, log=None)
    print(f"# trained {recipe.dataset} BadNets model in {time.perf_counter() - t0:.0f} s: {built.metrics}")
    save_model(cache, built.model)
    return built.model, f"{cache} (trained now)"


def _timed(det: NeuralCleanse, model: Classifier, x: torch.Tensor) -> tuple[ScanReport, float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    rep = det.scan(model, x, seed=0, progress=False)
    return rep, time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="runs/models/mnist_badnets4_t5.safetensors")
    ap.add_argument("--data-dir", default="../shared/data/mnist")
    ap.add_argument("--n-images", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=None, help="default: the detector's default")
    ap.add_argument("--steps-per-epoch", type=int, default=None, help="default: the detector's default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=("batched", "unbatched"), default=None)
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model, source = _model(args.model, args.data_dir)
    test = _mnist(args.data_dir, "test") if model.input_shape == (1, 28, 28) else None
    if test is None or test.input_shape != model.input_shape:
        x = torch.rand((args.n_images, *model.input_shape), generator=torch.Generator().manual_seed(1))
        print("# no matching clean data: using uniform noise images")
    else:
        x = test.x[torch.randperm(len(test), generator=torch.Generator().manual_seed(1))[: args.n_images]]
    kw: dict[str, int] = {}
    if args.epochs is not None:
        kw["epochs"] = args.epochs
    if args.steps_per_epoch is not None:
        kw["steps_per_epoch"] = args.steps_per_epoch
    print(f"# model {source}; {x.shape[0]} clean images; threads {args.threads}; overrides {kw or 'none'}")

    runs: dict[str, tuple[ScanReport, float, float]] = {}
    for mode in ("batched", "unbatched"):
        if args.only and mode != args.only:
            continue
        runs[mode] = _timed(NeuralCleanse(batched=mode == "batched", **kw), model, x)
        rep, wall, cpu = runs[mode]
        print(f"{mode:>9}: wall {wall:7.1f} s  cpu {cpu:7.1f} s  queries {rep.model_queries:>9}  "
              f"suspects {rep.suspects}  max anomaly index {rep.anomaly_index:.2f}", flush=True)
    if len(runs) == 2:
        (_, wb, cb), (_, wu, cu) = runs["batched"], runs["unbatched"]
        print(f"ratio unbatched/batched: wall {wu / wb:.2f}x  cpu {cu / cb:.2f}x")
    print("label " + "".join(f"| {m:^34} " for m in runs))
    print("      " + "".join(f"| {'L1':>7} {'index':>7} {'succ':>5} {'epochs':>6} {'reach':>5} " for _ in runs))
    k = model.num_classes
    for i in range(k):
        row = f"{i:>5} "
        for rep, _, _ in runs.values():
            c = rep.classes[i]
            row += (f"| {c.statistic:7.2f} {c.anomaly_index:7.2f} {c.extra['attack_success']:5.2f} "
                    f"{int(c.extra['epochs']):>6} {int(c.extra['reached_threshold']):>5} ")
        print(row)
    if args.json:
        out = {m: {"wall_s": w, "cpu_s": c, "suspects": r.suspects, "anomaly_index": r.anomaly_index,
                   "statistics": [cl.statistic for cl in r.classes],
                   "indices": [cl.anomaly_index for cl in r.classes]} for m, (r, w, c) in runs.items()}
        Path(args.json).write_text(json.dumps({"model": source, "n_images": int(x.shape[0]), "overrides": kw, **out}, indent=1))


if __name__ == "__main__":
    main()
