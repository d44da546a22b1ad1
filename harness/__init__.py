"""harness: evaluate LLMs on your own workload: quality with confidence intervals, cost and latency."""

__version__ = "0.1.0"
