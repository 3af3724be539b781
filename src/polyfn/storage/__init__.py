"""Object storage: an S3-compatible store served by `polyfn serve` (see docs/storage.md)."""
