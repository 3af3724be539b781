"""The Python runtime: a zygote that forks instances, and the instance loop itself."""
