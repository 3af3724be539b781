"""Language runtimes: the code that runs inside instance processes."""
