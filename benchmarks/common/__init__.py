"""Helpers more than one group uses: run metadata and the results-naming scheme (results.py), the metric
definitions of `vllm bench serve` (metrics.py), prompts (datasets.py), fleet processes (procs.py) and the raw Kafka
floor (floor.py)."""
