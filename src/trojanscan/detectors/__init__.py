"""Detectors: Neural Cleanse, NeuronInspect, DeepInspect, behind one contract and registry."""

from trojanscan.detectors.base import (
    Detector,
    DetectorOutput,
    detector_class,
    get_detector,
    list_detectors,
    register_detector,
)

__all__ = ["Detector", "DetectorOutput", "detector_class", "get_detector", "list_detectors", "register_detector"]
