"""Time NeuronInspect against Neural Cleanse on the same model and data (NeuronInspect paper, Table 4).

    .venv/bin/python scripts/bench_ni_speed.py [--model runs/models/mnist_badnets4_t5.safetensors]
        [--data-dir /work/shared/data/mnist] [--n-data 2000] [--threads 2] [--seed 0]
        [--ni-params '{"n_images": 50}'] [--nc-params '{"epochs": 60}'] [--skip-nc]

Uses ``--model`` when it exists (MNIST test images as clean data); otherwise trains the tiny synthetic
BadNets model of the test fixtures (4x4 white square -> 5) and uses synthetic digits. Both detectors
scan the same model with the same clean data and seed in this one process; the script prints each
one's wall-clock time, verdict, suspects and anomaly index, and the ratio NI / NC (the paper reports
NeuronInspect at under 10 % of Neural Cleanse: 3.82 s vs 44.37 s on MNIST, 54.04 s vs 556.94 s on GTSRB,
one GTX 1080 Ti). Neural Cleanse is optional: when ``trojanscan.detectors.neural_cleanse`` is not
importable (or ``--skip-nc``) only NeuronInspect is timed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from trojanscan.data.base import Dataset
from trojanscan.detectors import get_detector, list_detectors
from trojanscan.models.classifier import Classifier
from trojanscan.models.io import load_model
from trojanscan.report.scan_report import ScanReport


def _setup(model_path: str, data_dir: str, n_data: int) -> tuple[Classifier, Dataset, str]:
    if Path(model_path).exists():
        model = load_model(model_path)
        try:
            from trojanscan.data.registry import load_dataset

            data = load_dataset("mnist", data_dir, "test")
        except Exception as exc:  # no MNIST files: synthetic digits of the model's shape
            print(f"# MNIST not readable from {data_dir!r} ({type(exc).__name__}: {exc}); using synthetic digits")
            from trojanscan.data.synthetic import synthetic_digits

            data = synthetic_digits(n_data, seed=1)
        if data.input_shape != model.input_shape:
            raise SystemExit(f"data shape {data.input_shape} does not match the model's {model.input_shape}")
        return model, data.subset(torch.arange(min(n_data, len(data)))), model_path
    from trojanscan.data.synthetic import synthetic_digits, train_test_split
    from trojanscan.recipes import AttackSpec, TrainRecipe, build_model
    from trojanscan.training import TrainConfig

    print(f"# {model_path!r} not found: training the tiny synthetic BadNets model of the test fixtures")
    tr, te = train_test_split(synthetic_digits(3000, seed=0), 0.2, seed=0)
    recipe = TrainRecipe("synthetic", attack=AttackSpec("badnets", target="5", trigger_size=4),
                         config=TrainConfig(epochs=3, batch_size=64, lr=3e-3), seed=0)
    built = build_model(recipe, tr, te, progress=False, log=None)
    return built.model, te, "synthetic tiny_cnn (trained here)"


def _timed(name: str, params: dict[str, object], model: Classifier, data: Dataset, seed: int) -> tuple[float, ScanReport]:
    det = get_detector(name, **params)
    t0 = time.perf_counter()
    report = det.scan(model, data, seed=seed, progress=False)
    dt = time.perf_counter() - t0
    print(f"{name:16s} {dt:9.2f} s  verdict={report.verdict:8s} suspects={report.suspects} "
          f"anomaly_index={report.anomaly_index:.2f} queries={report.model_queries}")
    return dt, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="runs/models/mnist_badnets4_t5.safetensors")
    ap.add_argument("--data-dir", default="/work/shared/data/mnist")
    ap.add_argument("--n-data", type=int, default=2000, help="clean images handed to both detectors")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ni-params", default="{}", help="JSON hyperparameters for NeuronInspect")
    ap.add_argument("--nc-params", default="{}", help="JSON hyperparameters for Neural Cleanse")
    ap.add_argument("--skip-nc", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, data, label = _setup(args.model, args.data_dir, args.n_data)
    print(f"# model: {label}  input {model.input_shape}  classes {model.num_classes}  "
          f"clean images {len(data)}  threads {args.threads}  torch {torch.__version__}")
    t_ni, _ = _timed("neuron_inspect", json.loads(args.ni_params), model, data, args.seed)
    if args.skip_nc:
        return
    try:
        available = "neural_cleanse" in list_detectors()
    except Exception as exc:  # a half-written colleague module must not break this benchmark
        print(f"# neural_cleanse not importable ({type(exc).__name__}: {exc}); NeuronInspect timed alone")
        return
    if not available:
        print("# neural_cleanse is not registered; NeuronInspect timed alone")
        return
    t_nc, _ = _timed("neural_cleanse", json.loads(args.nc_params), model, data, args.seed)
    print(f"ratio NeuronInspect / Neural Cleanse = {t_ni / t_nc:.4f}  (NC is {t_nc / t_ni:.1f}x slower; "
          "paper Table 4: 0.086 on MNIST, 0.097 on GTSRB)")


if __name__ == "__main__":
    main()
