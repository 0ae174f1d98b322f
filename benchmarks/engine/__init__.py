"""The engine alone, in process, no Kafka: throughput and latency per configuration (bench.py), the CPU cost of
output processing, and a draft model cut from the target for speculation."""
