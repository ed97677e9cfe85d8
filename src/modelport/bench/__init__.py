"""Measurements: latency percentiles and throughput, in-process (and, later, against a server).

Every number modelport reports (quantize, prune, plan) comes from here.
"""

from .inprocess import LatencyConfig, LatencyStats, compare_latency, measure_session

__all__ = ["LatencyConfig", "LatencyStats", "compare_latency", "measure_session"]
