"""Benchmarks run by ``make bench`` (deselected from ``make test``): speed and memory targets live here."""
