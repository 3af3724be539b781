"""Process management on the server side: the instance manager, the zygote client, function zygotes, the launcher,
instance handles, the node's sandbox and each start's spec, process exits, CPU shares and the memory budget."""
