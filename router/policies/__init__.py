"""Pure decisions the router's stages apply, one module each (no Kafka, no clock reads: time comes in):
classify (a request's complexity score and tier), dedup (the id window), overload (per-model load and the
refusal)."""
