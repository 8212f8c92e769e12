"""Synthetic data generators: realistic, deterministic deliveries for tests and benchmarks."""
