"""The engine at a realistic size (a ~1B Llama shape, RANDOM weights) on a GPU: bench.py, and runbook.sh that
carries it to a lent GPU machine."""
