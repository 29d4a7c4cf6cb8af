"""Scan reports: dataclasses, JSON (de)serialisation, HTML rendering."""

from trojanscan.report.html import render_html, write_html
from trojanscan.report.scan_report import SCHEMA, ClassResult, DataInfo, ModelInfo, ScanReport

__all__ = ["SCHEMA", "ClassResult", "DataInfo", "ModelInfo", "ScanReport", "render_html", "write_html"]
