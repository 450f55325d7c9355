"""Benchmarks of the router: `python -m bench.run --quick` runs the suite (see run.py)."""
