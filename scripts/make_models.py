"""Train (or reuse from the cache) the core benchmark models: clean and BadNets MNIST / GTSRB.

    .venv/bin/python scripts/make_models.py --data-dir ../shared/data --out runs/bench/models [--only mnist]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from trojanscan.bench.zoo import badnets, clean, get_or_train
from trojanscan.recipes import AttackSpec, TrainRecipe

ap = argparse.ArgumentParser()
ap.add_argument("--data-dir", default="../shared/data")
ap.add_argument("--out", default="runs/bench/models")
ap.add_argument("--only", default=None, help="mnist | gtsrb | gtsrb-tar | mnist-attacks")
args = ap.parse_args()
torch.set_num_threads(max(1, torch.get_num_threads()))

sets = {
    "mnist": {
        "mnist_badnets4_t5": badnets("mnist", "5"),
        "mnist_clean_s0": clean("mnist", 0),
        "mnist_clean_s1": clean("mnist", 1),
    },
    "gtsrb": {
        "gtsrb_badnets4_t18": badnets("gtsrb", "18"),
        "gtsrb_clean_s0": clean("gtsrb", 0),
        "gtsrb_clean_s1": clean("gtsrb", 1),
    },
    # A contrasting 4x4 pattern: the white square is no trigger on an already white corner (RESULTS, issue 2).
    "gtsrb-tar": {
        "gtsrb_random4_t18": badnets("gtsrb", "18", pattern="random"),
    },
    "mnist-attacks": {
        "mnist_blend_t5": TrainRecipe("mnist", attack=AttackSpec("blend", target="5", alpha=0.1)),
        "mnist_multi3": TrainRecipe("mnist", attack=AttackSpec("badnets", target="1,4,7")),
        "mnist_all2all": TrainRecipe("mnist", attack=AttackSpec("badnets", target="all")),
        "mnist_trojannn_t5": TrainRecipe("mnist", attack=AttackSpec("trojannn", target="5", trigger_size=6)),
    },
}
for group, models in sets.items():
    if args.only and group != args.only:
        continue
    sub = f"{args.data_dir}/{group.split('-')[0]}"
    for name, recipe in models.items():
        t0 = time.time()
        model, truth = get_or_train(name, recipe, sub, args.out, progress=False)
        print(json.dumps({"model": name, **truth["metrics"], "wall_s": round(time.time() - t0, 1)}), flush=True)
