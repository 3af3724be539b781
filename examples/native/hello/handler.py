"""polyfn's native convention: handler(event, context).

For HTTP calls `event` is the request (method, path, query, headers, body, json()); for the invoke API and
triggers it is the parsed JSON payload.
"""


def handler(event, context):
    if hasattr(event, "method"):  # an HTTP call through /fn/hello
        name = event.query.get("name", "world")
        return {"message": f"hello {name}", "method": event.method, "path": event.path}
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    print(f"greeting {name}")
    return {"message": f"hello {name}", "activation": context.activation_id}
