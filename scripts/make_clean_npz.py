"""Write a clean-sample file for `trojanscan scan --data` / `scan-zoo --data`: N seeded test images of a dataset.

    .venv/bin/python scripts/make_clean_npz.py --dataset mnist --data-dir ../shared/data/mnist --n 500 \
        --out runs/zoo_data/mnist_clean500.npz

The sample is the benchmarks' own (seed 1234 over the test split), so zoo scans see the same images as
`trojanscan bench`.
"""

from __future__ import annotations

import argparse

import torch

from trojanscan.data.npz import save_npz
from trojanscan.data.registry import load_dataset

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--dataset", required=True, help="mnist | gtsrb | cifar10")
ap.add_argument("--data-dir", required=True)
ap.add_argument("--n", type=int, default=500)
ap.add_argument("--seed", type=int, default=1234)
ap.add_argument("--out", required=True)
args = ap.parse_args()
test = load_dataset(args.dataset, args.data_dir, "test")
idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))[: args.n]
path = save_npz(args.out, test.subset(idx, f"{args.dataset} clean sample"))
print(f"wrote {path} ({min(args.n, len(test))} images)")
