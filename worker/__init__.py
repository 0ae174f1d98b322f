"""The per-model worker: Kafka loop, admission and backpressure, the inference
engine, token streaming and offset management."""
