"""Benchmark suite for notify-push-gateway: load generator, baseline server, scenarios.

Run ``python -m benchmarks.run --help``; see ``benchmarks/README.md``.
"""
