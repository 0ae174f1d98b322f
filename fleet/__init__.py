"""Shared pieces of llm-fleet: settings, Kafka wiring, logging, the embedded
broker, the Python client library and the `fleet` CLI."""
