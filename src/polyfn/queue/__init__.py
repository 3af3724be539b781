"""The durable async-invocation queue (embedded default: a SQLite file in the data dir) and its dispatcher."""
