"""The benchmarks (`make bench`, `make soak`) and, under `experiments`, the one-off measurements.

Run from the repository root as modules: `.venv/bin/python -m bench.run`, `-m bench.soak`,
`-m bench.experiments.instructions`.
"""
