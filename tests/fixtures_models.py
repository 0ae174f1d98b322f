"""Checkpoint fixtures: filled in with the demo models."""
