"""The router: intake consumer, validation, complexity classification, tier
choice, and publishing to per-model topics."""
