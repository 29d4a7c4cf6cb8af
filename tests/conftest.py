"""Shared fixtures: tiny seeded datasets and models that train in seconds (no files, no ../shared)."""

from __future__ import annotations

import pytest

from trojanscan.data.base import Dataset
from trojanscan.data.synthetic import synthetic_digits, train_test_split
from trojanscan.recipes import AttackSpec, BuiltModel, TrainRecipe, build_model
from trojanscan.training import TrainConfig

TINY = TrainConfig(epochs=3, batch_size=64, lr=3e-3)


@pytest.fixture(scope="session")
def digits() -> tuple[Dataset, Dataset]:
    """3000 synthetic 1x28x28 digit images, split 80/20."""
    return train_test_split(synthetic_digits(3000, seed=0), 0.2, seed=0)


def _build(digits: tuple[Dataset, Dataset], attack: AttackSpec | None, seed: int) -> BuiltModel:
    tr, te = digits
    return build_model(TrainRecipe("synthetic", attack=attack, config=TINY, seed=seed), tr, te, progress=False, log=None)


@pytest.fixture(scope="session")
def clean_model(digits: tuple[Dataset, Dataset]) -> BuiltModel:
    """A clean tiny CNN (seed 0)."""
    return _build(digits, None, 0)


@pytest.fixture(scope="session")
def trojaned_model(digits: tuple[Dataset, Dataset]) -> BuiltModel:
    """The same recipe trojaned with BadNets: 4x4 white square at the bottom right, target 5."""
    return _build(digits, AttackSpec("badnets", target="5", trigger_size=4), 0)
