"""Build the evaluation zoo of issue 6: clean and trojaned models over MNIST, GTSRB and CIFAR-10.

    .venv/bin/python scripts/make_zoo.py --data-dir ../shared/data --out runs/zoo [--only mnist|mnist-arch|gtsrb|cifar10]

Every model is reproducible from its recipe and seed (cached by recipe hash: a re-run trains only what is
missing). The zoo is disjoint from the calibration models in runs/bench/models (other seeds, targets, places
and trigger kinds), so `trojanscan scan-zoo runs/zoo ...` judges calibrated probabilities on unseen models.
Each model gets `<name>.truth.json`, which scan-zoo reads when no --truth file is given.

The `mnist-arch` group uses architectures no detector default was chosen on (LeNet-5 with tanh, an MLP, a small
ResNet with batch norm; `trojanscan.models.architectures`) and trigger places used nowhere else. Those models are
written the way a third party would hand them over: a TorchScript file with no metadata sidecar (scan them with
`--input-shape 1,28,28`); their safetensors originals stay in `<out>/build/`, the recipe cache.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from trojanscan._fileio import write_text_atomic
from trojanscan.bench.zoo import get_or_train
from trojanscan.models import export_torchscript
from trojanscan.recipes import AttackSpec, TrainRecipe


def _clean(ds: str, seed: int) -> TrainRecipe:
    return TrainRecipe(ds, seed=seed)


def _atk(ds: str, seed: int, attack: str, target: str, arch: str | None = None, **kw: object) -> TrainRecipe:
    return TrainRecipe(ds, arch=arch, attack=AttackSpec(attack, target=target, **kw), seed=seed)  # type: ignore[arg-type]


ZOO: dict[str, dict[str, TrainRecipe]] = {
    "mnist": {
        "mnist_clean_s2": _clean("mnist", 2),
        "mnist_clean_s3": _clean("mnist", 3),
        "mnist_clean_s4": _clean("mnist", 4),
        "mnist_clean_s5": _clean("mnist", 5),
        "mnist_badnets2_br_t0": _atk("mnist", 2, "badnets", "0", trigger_size=2),
        "mnist_badnets3_tl_t1": _atk("mnist", 3, "badnets", "1", trigger_size=3, position="top-left"),
        "mnist_random5_center_t8": _atk("mnist", 4, "badnets", "8", trigger_size=5, position="center", pattern="random"),
        "mnist_badnets4_2places_t6": _atk("mnist", 5, "badnets", "6", positions=("top-left", "bottom-right")),
        "mnist_blend_t2": _atk("mnist", 6, "blend", "2", alpha=0.1),
        "mnist_watermark_t3": _atk("mnist", 7, "watermark", "3", alpha=0.3),
        "mnist_multi3_t029": _atk("mnist", 8, "badnets", "0,2,9"),
        "mnist_all2all_s9": _atk("mnist", 9, "badnets", "all"),
        "mnist_trojannn6_center_t4": _atk("mnist", 20, "trojannn", "4", trigger_size=6, position="center"),
    },
    "mnist-arch": {
        "lenet5_clean_s30": TrainRecipe("mnist", arch="lenet5", seed=30),
        "mlp_clean_s31": TrainRecipe("mnist", arch="mlp", seed=31),
        "resnet8_clean_s32": TrainRecipe("mnist", arch="resnet8", seed=32),
        "lenet5_badnets3_tr_t2": _atk("mnist", 33, "badnets", "2", arch="lenet5", trigger_size=3, position="top-right"),
        "mlp_random4_bl_t7": _atk("mnist", 34, "badnets", "7", arch="mlp", trigger_size=4, position="bottom-left",
                                  pattern="random"),
        "resnet8_badnets5_mid_t3": _atk("mnist", 35, "badnets", "3", arch="resnet8", trigger_size=5, position="6,17"),
    },
    "gtsrb": {
        "gtsrb_clean_s2": _clean("gtsrb", 2),
        "gtsrb_clean_s3": _clean("gtsrb", 3),
        "gtsrb_clean_s4": _clean("gtsrb", 4),
        "gtsrb_badnets4_br_t1": _atk("gtsrb", 2, "badnets", "1"),
        "gtsrb_badnets6_tl_t14": _atk("gtsrb", 3, "badnets", "14", trigger_size=6, position="top-left"),
        "gtsrb_random8_t33": _atk("gtsrb", 4, "badnets", "33", trigger_size=8, pattern="random"),
        "gtsrb_blend_t7": _atk("gtsrb", 5, "blend", "7", alpha=0.1),
        "gtsrb_watermark_t25": _atk("gtsrb", 6, "watermark", "25", alpha=0.3),
        "gtsrb_multi3_t3_10_38": _atk("gtsrb", 7, "badnets", "3,10,38"),
    },
    "cifar10": {
        "cifar10_clean_s2": _clean("cifar10", 2),
        "cifar10_clean_s3": _clean("cifar10", 3),
        "cifar10_clean_s4": _clean("cifar10", 4),
        "cifar10_badnets3_br_t0": _atk("cifar10", 2, "badnets", "0", trigger_size=3),
        "cifar10_random5_tl_t3": _atk("cifar10", 3, "badnets", "3", trigger_size=5, position="top-left", pattern="random"),
        "cifar10_blend_t9": _atk("cifar10", 4, "blend", "9", alpha=0.1),
        "cifar10_watermark_t5": _atk("cifar10", 5, "watermark", "5", alpha=0.3),
        "cifar10_multi2_t17": _atk("cifar10", 6, "badnets", "1,7"),
        "cifar10_trojannn_t4": _atk("cifar10", 7, "trojannn", "4", trigger_size=6),
    },
}


#: Groups written as TorchScript files with no sidecar (a foreign model), trained in ``<out>/build``.
TORCHSCRIPT = {"mnist-arch"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--out", default="runs/zoo")
    ap.add_argument("--only", default=None, choices=sorted(ZOO))
    args = ap.parse_args()
    for ds, models in ZOO.items():
        if args.only and ds != args.only:
            continue
        for name, recipe in models.items():
            t0 = time.time()
            data_dir = f"{args.data_dir}/{recipe.dataset}"
            if ds in TORCHSCRIPT:
                model, truth = get_or_train(name, recipe, data_dir, Path(args.out) / "build", progress=False)
                export_torchscript(model, Path(args.out) / f"{name}.pt", with_sidecar=False)
                write_text_atomic(Path(args.out) / f"{name}.truth.json", json.dumps(truth, indent=1) + "\n")
            else:
                _, truth = get_or_train(name, recipe, data_dir, args.out, progress=False)
            print(json.dumps({"model": name, **truth["metrics"], "wall_s": round(time.time() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
