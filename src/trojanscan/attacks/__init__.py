"""Attacks that make trojaned test models: BadNets patches, blended, watermark, multi-location, TrojanNN."""

from __future__ import annotations

from collections.abc import Sequence

from trojanscan.attacks.labels import LabelMode
from trojanscan.attacks.poison import Attack, trojan_activation_rate
from trojanscan.errors import InvalidInputError
from trojanscan.triggers import (
    Position,
    Trigger,
    blended_trigger,
    multi_location_trigger,
    random_pattern_trigger,
    square_trigger,
    watermark_trigger,
)
from trojanscan.types import Shape3

ATTACKS = ("badnets", "blend", "watermark", "trojannn")
PATTERNS = ("square", "random")

__all__ = ["ATTACKS", "Attack", "LabelMode", "build_attack", "make_trigger", "trojan_activation_rate"]


def make_trigger(
    attack: str,
    input_shape: Shape3,
    *,
    trigger_size: int = 4,
    position: Position = "bottom-right",
    positions: Sequence[Position] | None = None,
    alpha: float | None = None,
    pattern: str = "square",
    seed: int = 0,
) -> Trigger:
    """The trigger of a named attack (see :func:`build_attack`)."""
    if attack in ("badnets", "trojannn"):
        if pattern not in PATTERNS:
            raise InvalidInputError(f"unknown trigger pattern {pattern!r}; use one of {', '.join(PATTERNS)}")
        a = 1.0 if alpha is None else alpha
        if pattern == "square":
            trig = square_trigger(input_shape, trigger_size, position, alpha=a)
        else:
            trig = random_pattern_trigger(input_shape, trigger_size, position, seed=seed, alpha=a)
        if positions:
            trig = multi_location_trigger(trig, input_shape, list(positions))
        return trig
    if attack == "blend":
        return blended_trigger(input_shape, 0.1 if alpha is None else alpha, seed=seed)
    if attack == "watermark":
        return watermark_trigger(input_shape, 0.4 if alpha is None else alpha)
    raise InvalidInputError(f"unknown attack {attack!r}; choose one of {', '.join(ATTACKS)}")


def build_attack(
    attack: str,
    input_shape: Shape3,
    num_classes: int,
    *,
    target: str | int | Sequence[int] = 0,
    trigger_size: int = 4,
    position: Position = "bottom-right",
    positions: Sequence[Position] | None = None,
    alpha: float | None = None,
    pattern: str = "square",
    poison_rate: float = 0.1,
    seed: int = 0,
) -> Attack:
    """A poisoning attack by name: ``badnets`` (patch; square or random pattern, any size/place, or several
    places), ``blend`` (whole-image noise at ``alpha``, default 0.1), ``watermark`` (tiled text at ``alpha``,
    default 0.4). ``target``: a label, ``"a,b,c"`` (all-to-several) or ``"all"`` (all-to-all).
    TrojanNN is not pure poisoning: see :mod:`trojanscan.attacks.trojannn`.
    """
    labels = LabelMode.parse(target, num_classes)
    trig = make_trigger(attack, input_shape, trigger_size=trigger_size, position=position, positions=positions,
                        alpha=alpha, pattern=pattern, seed=seed)
    params = {"trigger_size": trigger_size, "position": list(position) if isinstance(position, tuple) else position,
              "positions": [list(p) if isinstance(p, tuple) else p for p in positions] if positions else None,
              "alpha": trig.alpha, "pattern": pattern, "seed": seed}
    return Attack(attack, trig, labels, poison_rate, params)
