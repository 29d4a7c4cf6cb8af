"""trojanscan: detect neural trojans (backdoors) in pre-trained image classifiers.

Public API (see docs/ and ../shared/DESIGN.md):

- :class:`trojanscan.models.Classifier` wraps any model (float32 NCHW in [0, 1] -> logits);
- :func:`trojanscan.models.load_model` / :func:`trojanscan.models.save_model` do safe model I/O;
- :mod:`trojanscan.detectors` holds the registered detectors (``get_detector(name)``);
- :class:`trojanscan.report.ScanReport` is the one result type.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
