"""Refinery's benchmarks against its design budgets: `python -m bench` (or `make bench`)."""
