"""polyfn: a self-hosted serverless platform."""
__version__ = "0.1.0"
