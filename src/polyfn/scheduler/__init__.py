"""Instance lifecycle on the server side: zygote client, instance handles, per-revision pools."""
