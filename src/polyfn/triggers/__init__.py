"""Trigger runners: one module per source (cron, topic, nats, redis, amqp, mqtt, kafka, log), managed by
`manager.TriggerManager`; definitions persist in the store's `triggers` table (`store.py`)."""
