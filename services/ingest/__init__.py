"""The ingest gateway: authenticate, limit, map, validate, enqueue, and answer fast."""
