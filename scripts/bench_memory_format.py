"""Time DeepInspect and Neural Cleanse on a model as it is (NCHW) and on a channels-last copy, side by side.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_memory_format.py [--arch tiny_cnn mnist_cnn] [--threads 1]
        [--profile]   # a cProfile of the as-trained DeepInspect scan, the 12 functions with the most own time
                      # (profiling slows that scan: take time ratios from a run without it)

A question for a later default, not a default: PyTorch's CPU max pooling is several times faster on channels-last
tensors, and a channels-last copy of a network's weights makes its convolutions return such tensors. This script
trains each architecture on the synthetic digits (BadNets 4x4 -> 5, seed 0, 3 epochs; no download), then scans
it data-free with DeepInspect and with 300 clean images with Neural Cleanse, once as trained and once on a
``copy.deepcopy`` whose module was moved with ``.to(memory_format=torch.channels_last)`` (the scanned model is
never changed). It prints each scan's wall time, the ratio, whether the suspects agree and the largest relative
change of a per-class statistic: the kernels sum in another order, and a thousand optimiser steps carry that
rounding difference into visibly different triggers (on tiny_cnn, DeepInspect's statistics moved by up to 10 %).
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import pstats
import time

import torch

from trojanscan.data.synthetic import synthetic_digits, train_test_split
from trojanscan.detectors import get_detector
from trojanscan.models.classifier import Classifier
from trojanscan.recipes import AttackSpec, TrainRecipe, build_model
from trojanscan.training import TrainConfig


def _channels_last(model: Classifier) -> Classifier:
    twin = copy.deepcopy(model)
    twin.module.to(memory_format=torch.channels_last)
    return twin


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", default=["tiny_cnn", "mnist_cnn"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", action="store_true", help="profile the first DeepInspect scan (own time per function)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tr, te = train_test_split(synthetic_digits(3000, seed=0), 0.2, seed=0)
    clean = te.subset(torch.arange(300), "clean")
    for arch in args.arch:
        recipe = TrainRecipe("synthetic", arch=arch, attack=AttackSpec("badnets", target="5", trigger_size=4),
                             config=TrainConfig(epochs=3, batch_size=64, lr=3e-3), seed=0)
        model = build_model(recipe, tr, te, progress=False, log=None).model
        for det, data in (("deep_inspect", None), ("neural_cleanse", clean)):
            row = []
            for fmt, m in (("nchw", model), ("channels_last", _channels_last(model))):
                prof = cProfile.Profile() if args.profile and not row and det == "deep_inspect" else None
                t0 = time.perf_counter()
                if prof is not None:
                    prof.enable()
                rep = get_detector(det).scan(m, data, seed=0, progress=False)
                row.append((fmt, time.perf_counter() - t0, rep))
                if prof is not None:
                    prof.disable()
                    total = pstats.Stats(prof).total_tt  # type: ignore[attr-defined]
                    stats = pstats.Stats(prof).sort_stats("tottime")
                    print(f"{arch} {det} (nchw) profile, {total:.1f} s in all; most own time:")
                    for key in stats.fcn_list[:12]:  # type: ignore[attr-defined]
                        own = stats.stats[key][2]  # type: ignore[attr-defined]
                        print(f"  {own:7.2f} s {100 * own / total:5.1f} %  {pstats.func_std_string(key)}")
            (_, t_a, a), (_, t_b, b) = row
            diff = max(abs(x.statistic - y.statistic) / max(abs(x.statistic), 1e-12)
                       for x, y in zip(a.classes, b.classes, strict=True))
            print(f"{arch} {det}: nchw {t_a:.1f} s (index {a.anomaly_index:.2f} {a.suspects}) | channels_last "
                  f"{t_b:.1f} s (index {b.anomaly_index:.2f} {b.suspects}) | time ratio {t_b / t_a:.2f} | "
                  f"suspects agree {a.suspects == b.suspects} | largest relative statistic change {diff:.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
