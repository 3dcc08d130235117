"""The performance benchmark: ``make bench`` (``python -m bench.run``); see docs/performance.md."""
