"""Benchmarks of winstor and its embedded cluster (`python -m bench`)."""
