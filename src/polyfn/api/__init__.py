"""The control-plane REST API (/v1) and, later, the vendor-compatible APIs under compat/."""
