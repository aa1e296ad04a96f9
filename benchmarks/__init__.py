"""Speed benchmarks; each prints one JSON line (see docs/benchmarks.md)."""
