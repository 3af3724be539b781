"""Access control: scoped API keys, per-function trigger keys, rate limits, secrets."""
