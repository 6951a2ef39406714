"""Benchmarks (not tests): `python -m bench quick|all|<suite>`; tables go to BENCHMARKS.md."""
