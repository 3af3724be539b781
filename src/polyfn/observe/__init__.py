"""Observability: activation records and logs (metrics and tracing come with their own issue)."""
