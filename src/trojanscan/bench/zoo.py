"""Build (or reuse) the trained models the benchmarks need, cached by a hash of their full recipe.

A model lives at ``<cache>/<name>.safetensors`` with its metadata sidecar ``<name>.json`` and its
ground truth ``<name>.truth.json``; the recipe key is recorded in the provenance, and a model whose
recipe changed is retrained. Re-running a benchmark does not retrain anything that is cached.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from trojanscan._fileio import write_text_atomic
from trojanscan.data.base import Dataset
from trojanscan.models.classifier import Classifier
from trojanscan.models.io import load_model, save_model
from trojanscan.recipes import AttackSpec, TrainRecipe, build_model


@cache
def _dataset(name: str, data_dir: str, split: str) -> Dataset:
    if name == "synthetic":
        from trojanscan.data.synthetic import synthetic_digits, train_test_split

        tr, te = train_test_split(synthetic_digits(8000, seed=0), 0.2, seed=0)
        return tr if split == "train" else te
    from trojanscan.data.registry import load_dataset

    return load_dataset(name, data_dir, split)


def dataset(name: str, data_dir: str | Path, split: str) -> Dataset:
    """The (memoised) train or test split of a benchmark dataset."""
    return _dataset(name, str(data_dir), split)


def cached(name: str, recipe: TrainRecipe, cache_dir: str | Path, *,
           device: str = "cpu") -> tuple[Classifier, dict[str, Any]] | None:
    """``<cache_dir>/<name>.safetensors`` (loaded onto ``device``) and its ground truth if that file was made by
    ``recipe``; else None."""
    path = Path(cache_dir) / f"{name}.safetensors"
    truth_path = Path(cache_dir) / f"{name}.truth.json"
    if path.is_file() and truth_path.is_file():
        truth = json.loads(truth_path.read_text())
        if truth.get("recipe_key") == recipe.key():
            return load_model(path, device=device), truth
    return None


def get_or_train(
    name: str, recipe: TrainRecipe, data_dir: str | Path, cache_dir: str | Path, *, progress: bool = True,
    log: Callable[[str], None] | None = print, device: str = "cpu",
) -> tuple[Classifier, dict[str, Any]]:
    """Load ``<cache_dir>/<name>.safetensors`` if its recipe key matches ``recipe``; else train and save it.

    Returns the model (on ``device``) and its ground truth (attack, targets, trigger, metrics).
    """
    found = cached(name, recipe, cache_dir, device=device)
    if found is not None:
        return found
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{name}.safetensors"
    truth_path = cache_dir / f"{name}.truth.json"
    key = recipe.key()
    data_name = recipe.dataset
    train_data = dataset(data_name, data_dir, "train")
    test_data = dataset(data_name, data_dir, "test")
    base_model = None
    if recipe.base is not None:  # a poisoned fine-tune: its base model from the cache (trained if absent)
        base_model = _cached_base(recipe.base, data_dir, cache_dir, progress=progress, log=log, device=device)
    if log is not None:
        log(f"training {name} ({key}) ...")
    built = build_model(recipe, train_data, test_data, progress=progress, log=log, base_model=base_model,
                        device=device)
    save_model(path, built.model, provenance=built.provenance())
    truth = built.truth()
    write_text_atomic(truth_path, json.dumps(truth, indent=1) + "\n")
    if log is not None:
        log(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in built.metrics.items()))
    return load_model(path, device=device), truth


def _cached_base(
    recipe: TrainRecipe, data_dir: str | Path, cache_dir: Path, *, progress: bool, log: Callable[[str], None] | None,
    device: str = "cpu",
) -> Classifier:
    """The model ``recipe`` makes: any cached model with that recipe key, else trained as ``base_<key>``."""
    key = recipe.key()
    for truth_path in sorted(cache_dir.glob("*.truth.json")):
        try:
            if json.loads(truth_path.read_text()).get("recipe_key") != key:
                continue
        except (OSError, ValueError):
            continue
        path = truth_path.with_name(truth_path.name.removesuffix(".truth.json") + ".safetensors")
        if path.is_file():
            return load_model(path, device=device)
    return get_or_train(f"base_{key}", recipe, data_dir, cache_dir, progress=progress, log=log, device=device)[0]


def badnets(dataset_name: str, target: str, size: int = 4, position: str = "bottom-right", seed: int = 0,
            **kw: Any) -> TrainRecipe:
    """A BadNets recipe with the dataset's default architecture and training settings."""
    return TrainRecipe(dataset_name, attack=AttackSpec("badnets", target=target, trigger_size=size,
                                                       position=position, **kw), seed=seed)


def clean(dataset_name: str, seed: int = 0) -> TrainRecipe:
    return TrainRecipe(dataset_name, seed=seed)
