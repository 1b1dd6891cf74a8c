"""Benchmarks: `make bench` (python -m bench). Prints one line per figure."""
