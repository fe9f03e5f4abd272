"""One-off measurements behind findings in BENCHMARKS.md and docs/ (README.md says which)."""
