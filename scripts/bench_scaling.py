"""DeepInspect Figure 7: how the scan time of DeepInspect and Neural Cleanse grows with the number of classes.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_scaling.py --arch gtsrb_cnn --shape 3 32 32 --classes 10 43 100 \
        [--nc-epochs 1] [--nc-steps 5] [--di-steps 100] [--inversion-steps 30] [--threads 1]

Neither detector's cost per step depends on the weights, so the same architecture is built untrained (seeded)
with K outputs for each K and each loop is timed for a few steps, one run, same process:

- Neural Cleanse, its defaults but ``--nc-epochs`` epochs of ``--nc-steps`` steps and early stop off (every
  label runs every step, as in our two full GTSRB scans, where no label stopped early), on 500 random images;
- DeepInspect's three parts as its ``scan`` runs them: model inversion (``n_per_class`` = 5 per class) for
  ``--inversion-steps`` steps, the conditional generator for ``--di-steps`` steps, the trigger statistics.

Each measured time is printed next to the time it implies at the **default** settings (Neural Cleanse 30
epochs of 31 steps; DeepInspect 300 inversion steps, 3 generators x 1000 steps, 3 statistics passes): per-step time x the
default count. That column is a linear projection, labelled as such; the loops cost the same at every step.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from trojanscan.data.base import Dataset
from trojanscan.detectors.deep_inspect import DeepInspect
from trojanscan.detectors.neural_cleanse import NeuralCleanse
from trojanscan.generator import train_trigger_generator, trigger_statistics
from trojanscan.inversion import invert
from trojanscan.models.architectures import build_architecture
from trojanscan.models.classifier import Classifier


def _timed(fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="gtsrb_cnn")
    ap.add_argument("--shape", type=int, nargs=3, default=[3, 32, 32])
    ap.add_argument("--classes", type=int, nargs="+", default=[10, 43, 100])
    ap.add_argument("--nc-epochs", type=int, default=1)
    ap.add_argument("--nc-steps", type=int, default=5)
    ap.add_argument("--di-steps", type=int, default=100)
    ap.add_argument("--inversion-steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shape = tuple(args.shape)
    nc_def, di_def = NeuralCleanse(), DeepInspect()
    thres = di_def.thres_ratio * shape[0] * shape[1] * shape[2]
    rows = []
    warm = Classifier(build_architecture(args.arch, shape, 2), shape, 2).eval()  # type: ignore[arg-type]
    invert(warm, n_per_class=1, steps=2, seed=0)  # first-call costs (allocator, kernels) stay out of the timings
    for k in args.classes:
        torch.manual_seed(0)
        model = Classifier(build_architecture(args.arch, shape, k), shape, k).eval()  # type: ignore[arg-type]
        g = torch.Generator().manual_seed(0)
        data = Dataset(torch.rand((500, *shape), generator=g), torch.randint(k, (500,), generator=g),
                       [str(i) for i in range(k)], "random")
        nc = NeuralCleanse(epochs=args.nc_epochs, steps_per_epoch=args.nc_steps, early_stop=False)
        _, t_nc = _timed(lambda: nc.scan(model, data, progress=False))  # noqa: B023
        inv, t_inv = _timed(lambda: invert(model, n_per_class=di_def.n_per_class,  # noqa: B023
                                           steps=args.inversion_steps, seed=0))
        sub = Dataset(inv.data.x, model.predict(inv.data.x), data.class_names, "inverted")
        gen, t_gen = _timed(lambda: train_trigger_generator(model, sub, steps=args.di_steps, thres=thres,  # noqa: B023
                                                            seed=0))
        _, t_stat = _timed(lambda: trigger_statistics(model, gen, sub, thres=thres, seed=0))  # noqa: B023
        nc_proj = t_nc * (nc_def.epochs * nc_def.steps_per_epoch) / (args.nc_epochs * args.nc_steps)
        di_proj = (t_inv * di_def.inversion_steps / args.inversion_steps
                   + di_def.n_repeats * (t_gen * di_def.steps / args.di_steps + t_stat))
        row = {"classes": k, "arch": args.arch, "NC s measured": round(t_nc, 1), "NC steps": args.nc_epochs * args.nc_steps,
               "inversion s measured": round(t_inv, 1), "inversion steps": args.inversion_steps,
               "generator s measured": round(t_gen, 1), "generator steps": args.di_steps,
               "statistics s": round(t_stat, 1), "NC s at defaults (projected)": round(nc_proj),
               "DI s at defaults (projected)": round(di_proj), "DI / NC": round(di_proj / nc_proj, 3)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = rows[0]
    print("\n| classes | NC at defaults (projected) | DI at defaults (projected) | DI / NC | NC growth | DI growth |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['classes']} | {r['NC s at defaults (projected)']} s | {r['DI s at defaults (projected)']} s | "
              f"{r['DI / NC']} | x{r['NC s at defaults (projected)'] / base['NC s at defaults (projected)']:.1f} | "
              f"x{r['DI s at defaults (projected)'] / base['DI s at defaults (projected)']:.1f} |")


if __name__ == "__main__":
    main()
