"""Benchmarks: real processes on this machine, figures printed as one line per run."""
