"""Scan reports: dataclasses, JSON (de)serialisation, HTML rendering."""

from trojanscan.report.scan_report import SCHEMA, ClassResult, DataInfo, ModelInfo, ScanReport

__all__ = ["SCHEMA", "ClassResult", "DataInfo", "ModelInfo", "ScanReport"]
