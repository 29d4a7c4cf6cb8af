"""ScanReport: the one result type (schema ``trojanscan.scan/1``, DESIGN.md §3).

Frozen dataclasses with a lossless JSON round-trip: ``ScanReport.from_json(r.to_json()) == r``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from trojanscan import __version__
from trojanscan._fileio import write_text_atomic
from trojanscan.errors import InvalidInputError

SCHEMA = "trojanscan.scan/1"
VERDICTS = ("benign", "trojaned")


@dataclass(frozen=True)
class ModelInfo:
    """What was scanned."""

    path: str | None
    sha256: str | None
    input_shape: list[int]
    num_classes: int
    outputs: str = "logits"  # what the network returns: logits | probabilities | log_probabilities (JSON: only if not logits)
    access: str = "white-box"  # or "query-only": scores only, input gradients estimated (JSON: only if query-only)


@dataclass(frozen=True)
class ClassResult:
    """One label's detector statistic and its anomaly index (or deviation factor)."""

    label: int
    statistic: float
    anomaly_index: float
    name: str | None = None
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DataInfo:
    """Where the images the detector looked at came from."""

    source: str  # "clean_data" | "model_inversion" | "none"
    n_images: int
    #: Share of the labelled clean images given to the scan that the model classifies right (at most
    #: ``detectors.base.MAX_ACCURACY_IMAGES`` of them, evenly spaced); None without labelled data (JSON: only if set).
    model_accuracy: float | None = None
    #: How many labelled clean images ``model_accuracy`` was measured on (JSON: only if set).
    model_accuracy_images: int | None = None


@dataclass(frozen=True)
class ScanReport:
    """Result of one detector (or of ``--method all``: the combined one, with ``reports``)."""

    method: str
    verdict: str
    anomaly_index: float
    cutoff: float
    suspects: list[int]
    classes: list[ClassResult]
    model: ModelInfo
    data: DataInfo
    runtime_s: float
    model_queries: int
    seed: int
    config: dict[str, Any]
    artifacts: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    trojan_probability: float | None = None
    reports: dict[str, ScanReport] = field(default_factory=dict)
    schema: str = SCHEMA
    tool_version: str = __version__

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise InvalidInputError(f"verdict must be one of {VERDICTS}; got {self.verdict!r}")

    @property
    def trojaned(self) -> bool:
        return self.verdict == "trojaned"

    @property
    def familywise(self) -> bool:
        """Whether the cutoff is the per-model (family-wise) one (for a combined report: its detectors')."""
        return bool(self.config.get("familywise")) or any(r.familywise for r in self.reports.values())

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"schema": self.schema, "tool_version": self.tool_version}
        for f in fields(self):
            if f.name in ("schema", "tool_version", "reports"):
                continue
            v = getattr(self, f.name)
            d[f.name] = asdict(v) if hasattr(v, "__dataclass_fields__") else (
                [asdict(c) for c in v] if f.name == "classes" else v
            )
        if self.trojan_probability is None:
            d.pop("trojan_probability")
        if self.model.outputs == "logits":  # optional: only a network that does not return logits adds the key
            d["model"].pop("outputs")
        if self.model.access == "white-box":  # optional: only a query-only model adds the key
            d["model"].pop("access")
        if self.data.model_accuracy is None:  # optional: only a scan given labelled clean images adds the key
            d["data"].pop("model_accuracy")
        if self.data.model_accuracy_images is None:
            d["data"].pop("model_accuracy_images")
        if self.reports:
            d["reports"] = {k: r.to_dict() for k, r in self.reports.items()}
        return _json_safe(d)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScanReport:
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            got = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise InvalidInputError(f"not a {SCHEMA} report (schema={got!r})")
        try:
            return cls._from_checked_dict(d)
        except InvalidInputError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            what = f"missing key {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
            raise InvalidInputError(f"malformed {SCHEMA} report ({what})") from exc

    @classmethod
    def _from_checked_dict(cls, d: dict[str, Any]) -> ScanReport:
        return cls(
            method=d["method"],
            verdict=d["verdict"],
            anomaly_index=_from_json_float(d["anomaly_index"]),
            cutoff=float(d["cutoff"]),
            suspects=[int(s) for s in d["suspects"]],
            classes=[
                ClassResult(
                    label=int(c["label"]),
                    statistic=_from_json_float(c["statistic"]),
                    anomaly_index=_from_json_float(c["anomaly_index"]),
                    name=c.get("name"),
                    extra={k: _from_json_float(v) for k, v in (c.get("extra") or {}).items()},
                )
                for c in d["classes"]
            ],
            model=ModelInfo(**d["model"]),
            data=DataInfo(**d["data"]),
            runtime_s=float(d["runtime_s"]),
            model_queries=int(d["model_queries"]),
            seed=int(d["seed"]),
            config=dict(d["config"]),
            artifacts=dict(d.get("artifacts") or {}),
            notes=list(d.get("notes") or []),
            trojan_probability=None if d.get("trojan_probability") is None else float(d["trojan_probability"]),
            reports={k: cls.from_dict(v) for k, v in (d.get("reports") or {}).items()},
            schema=d["schema"],
            tool_version=d.get("tool_version", __version__),
        )

    @classmethod
    def from_json(cls, text: str) -> ScanReport:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"report is not valid JSON: {exc}") from exc
        return cls.from_dict(d)

    def save_json(self, path: str | os.PathLike[str]) -> None:
        """Write the report atomically (no partial file on failure)."""
        write_text_atomic(path, self.to_json() + "\n")

    @classmethod
    def load_json(cls, path: str | os.PathLike[str]) -> ScanReport:
        try:
            with open(path, encoding="utf-8") as f:
                return cls.from_json(f.read())
        except OSError as exc:
            raise InvalidInputError(f"cannot read report {str(path)!r}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"report {str(path)!r} is not UTF-8 text (is it a JSON report?)") from exc


def _json_safe(v: Any) -> Any:
    """Infinite floats become the strings "inf"/"-inf" (JSON has no infinity); NaN is refused."""
    if isinstance(v, float):
        if math.isnan(v):
            raise ValueError("NaN in a report is a bug: a detector produced an undefined number")
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_safe(x) for x in v]
    return v


def _from_json_float(v: Any) -> float:
    return float(v)  # float("inf") parses the "inf" strings written by _json_safe
