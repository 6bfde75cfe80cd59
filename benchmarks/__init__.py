"""Benchmarks: runnable with `python -m benchmarks.NAME`; results merge into benchmarks/results.json."""
