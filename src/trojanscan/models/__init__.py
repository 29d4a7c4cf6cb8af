"""Models: the Classifier wrapper, the architectures registry and safe I/O."""

from trojanscan.models.architectures import build_architecture, list_architectures, register_architecture
from trojanscan.models.classifier import OUTPUT_KINDS, Classifier, detect_outputs, preserved_state, resolve_device
from trojanscan.models.io import (
    detect_format,
    export_onnx,
    export_torchscript,
    infer_input_shape,
    load_model,
    save_model,
    sidecar_path,
)
from trojanscan.models.query import QueryClassifier, query_only

__all__ = [
    "OUTPUT_KINDS",
    "Classifier",
    "QueryClassifier",
    "build_architecture",
    "detect_format",
    "detect_outputs",
    "export_onnx",
    "export_torchscript",
    "infer_input_shape",
    "list_architectures",
    "load_model",
    "preserved_state",
    "query_only",
    "register_architecture",
    "resolve_device",
    "save_model",
    "sidecar_path",
]
