"""Benchmarks (`make bench`): measured and reported, never asserted in tests."""
