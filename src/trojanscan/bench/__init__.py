"""Benchmarks: model zoo building (cached by recipe hash), paper experiments, zoo scanning and metrics."""
