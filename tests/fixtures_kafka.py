"""Kafka fixtures: filled in by the fleet wiring."""
