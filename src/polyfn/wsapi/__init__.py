"""WebSocket APIs for functions, in API Gateway's shape (docs/streaming.md, "WebSockets").

`events.py` (pure): connection ids, route selection, the API Gateway WebSocket events, what a handler's answer
means; `connections.py`: the node's open connections, their idle and total limits, pushes; `endpoint.py`: the
`ws://NODE/ws/FUNCTION` endpoint (ASGI websocket scope); `management.py`: the `@connections` management API that
boto3's `apigatewaymanagementapi` speaks; `cluster.py`: pushes to a connection another node holds (NATS);
`protocol.py`: uvicorn's WebSocket protocol, lighter per idle connection; `passthrough.py`: `ws://NODE/fn/FUNCTION`
upgrades relayed to an http-runtime program's own server.
"""
