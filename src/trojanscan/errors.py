"""Exception hierarchy. Every user-facing error names the value, the constraint and the fix."""

from __future__ import annotations


class TrojanScanError(Exception):
    """Base class of every error trojanscan raises on purpose."""


class InvalidInputError(TrojanScanError, ValueError):
    """A parameter, a file or data does not meet the documented contract."""


class DataFormatError(InvalidInputError):
    """A data file is broken, truncated or mislabelled."""


class MixedImageSizesError(DataFormatError):
    """An image folder holds images of different sizes and no size to bring them to was given."""


class ModelLoadError(InvalidInputError):
    """A model file cannot be loaded (corrupt, unknown format, metadata mismatch)."""


class UnsafeModelFileError(ModelLoadError):
    """A model file would need pickle (arbitrary code execution) to load."""


class QueryBudgetError(TrojanScanError):
    """A query-only model's budget of model queries (``max_queries``) would be exceeded."""


class WhiteBoxRequiredError(InvalidInputError):
    """A method needs gradients through the network (or its weights), and the model is query-only."""


def expect(condition: bool, message: str) -> None:
    """Raise :class:`InvalidInputError` with ``message`` unless ``condition`` holds (never ``assert``)."""
    if not condition:
        raise InvalidInputError(message)
