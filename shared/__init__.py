"""Contracts and plumbing shared by every leadwire service.

Event models, topic names, settings, logging, the Kafka producer and consumer runner,
the Postgres pool and migrations, and the health/metrics HTTP endpoints. Business rules
live in the service that owns them; no service imports another service.
"""
