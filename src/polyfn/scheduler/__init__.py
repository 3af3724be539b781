"""Scheduling on the server side: which revision each function serves and its pool, the pools (handing out
instances, scaling, keep-alive, shedding) and their pure decisions. The processes themselves: polyfn.instances."""
