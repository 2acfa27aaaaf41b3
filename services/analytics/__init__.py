"""Analytics: exact, durable per-webhook and per-workspace metrics, an API and a live dashboard."""
