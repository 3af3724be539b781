"""The client's endpoints by area of the API, one class each, all of them `Client`'s: what the node observed
(activations, logs, stats, usage), events (async invocations, dead letters, triggers, topics) and workflows.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from polyfn.sdk.wire import Calls, error_from_response, iter_sse_data, query


class Observing(Calls):
    def activations(
        self,
        function: str | None = None,
        status: str | None = None,
        cold: bool | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """`GET /v1/activations`, newest first; unset filters are not sent."""
        params = query(
            function=function,
            status=status,
            cold=None if cold is None else str(cold).lower(),
            since=since,
            until=until,
            limit=limit,
        )
        return self._json("GET", "/v1/activations", params=params).get("activations", [])

    def usage(self, since: float | None = None, until: float | None = None, by: str | None = None,
              function: str | None = None, prices: str | None = None) -> dict[str, Any]:
        """`GET /v1/usage`: metered invocations, GB-seconds and bytes by function, day or hour."""
        return self._json("GET", "/v1/usage", params=query(since=since, until=until, by=by, function=function,
                                                             prices=prices))

    def stats(self, window: float | None = None) -> dict[str, Any]:
        """`GET /v1/stats`: per-function rps, p50/p99, errors, cold starts and instances."""
        return self._json("GET", "/v1/stats", params=query(window=window))

    def function_stats(self, name: str, window: float | None = None) -> dict[str, Any]:
        """`GET /v1/functions/{name}/stats`: the function's history in 10-second points."""
        return self._json("GET", f"/v1/functions/{quote(name, safe='')}/stats", params=query(window=window))

    def activation(self, activation_id: str) -> dict[str, Any]:
        """`GET /v1/activations/{id}`: timings, result or error, and captured log lines."""
        return self._json("GET", f"/v1/activations/{quote(activation_id, safe='')}")

    def logs(
        self,
        name: str,
        since: float | None = None,
        activation: str | None = None,
        limit: int | None = None,
        grep: str | None = None,
    ) -> list[dict[str, Any]]:
        """`GET /v1/functions/{name}/logs`, oldest first; `grep` is a regular expression."""
        params = query(since=since, activation=activation, limit=limit, grep=grep)
        return self._json("GET", f"/v1/functions/{quote(name, safe='')}/logs", params=params).get("logs", [])

    def follow_logs(
        self,
        name: str,
        since: float | None = None,
        activation: str | None = None,
        limit: int | None = None,
        grep: str | None = None,
    ) -> Generator[dict[str, Any], None, None]:
        """Yield log lines as they happen (SSE `follow=true`) until the server closes the stream.

        The generator holds the connection open; close it (or break out of the loop) to stop.
        """
        params = query(follow="true", since=since, activation=activation, limit=limit, grep=grep)
        try:
            with self._http.stream(
                "GET",
                f"/v1/functions/{quote(name, safe='')}/logs",
                params=params,
                headers={"Accept": "text/event-stream"},
                timeout=self._long,
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(
                        response.status_code, response.headers, response.content, response.reason_phrase
                    )
                for data in iter_sse_data(response.iter_lines()):
                    try:
                        event = json.loads(data)
                    except ValueError:
                        event = {"line": data}
                    if isinstance(event, dict):
                        yield event
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc


class Events(Calls):
    def invoke_async(self, name: str, payload: bytes = b"{}", content_type: str = "application/json",
                     callback_url: str | None = None, event: str | None = None) -> str:
        """`POST /v1/functions/{name}/invoke?mode=async`: queue durably; returns the activation id."""
        headers = {"Content-Type": content_type}
        if callback_url:
            headers["X-Callback-Url"] = callback_url
        params = {"mode": "async", **({"event": event} if event else {})}
        return self._json("POST", f"/v1/functions/{quote(name, safe='')}/invoke", params=params,
                          content=payload, headers=headers)["activation_id"]

    def dead_letters(self, function: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        return self._json("GET", "/v1/dlq", params=query(function=function, limit=limit)).get("dead_letters", [])

    def dead_letter(self, entry_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/dlq/{quote(entry_id, safe='')}")

    def replay_dead_letter(self, entry_id: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/dlq/{quote(entry_id, safe='')}/replay")

    def delete_dead_letter(self, entry_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"/v1/dlq/{quote(entry_id, safe='')}")

    def add_trigger(self, function: str, kind: str, config: Mapping[str, Any],
                    trigger_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": kind, "config": dict(config)}
        if trigger_id:
            body["id"] = trigger_id
        return self._json("POST", f"/v1/functions/{quote(function, safe='')}/triggers", json=body)

    def triggers(self, function: str | None = None) -> list[dict[str, Any]]:
        return self._json("GET", "/v1/triggers", params=query(function=function)).get("triggers", [])

    def delete_trigger(self, trigger_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"/v1/triggers/{quote(trigger_id, safe='')}")

    def publish(self, topic: str, payload: bytes, content_type: str = "application/json",
                attributes: Mapping[str, str] | None = None) -> dict[str, Any]:
        headers = {"Content-Type": content_type}
        params = {f"attr.{k}": v for k, v in (attributes or {}).items()}
        return self._json("POST", f"/v1/topics/{quote(topic, safe='')}/messages", content=payload,
                          headers=headers, params=params)


class Workflows(Calls):
    def workflows(self) -> list[dict[str, Any]]:
        return self._json("GET", "/v1/workflows").get("workflows", [])

    def put_workflow(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._json("PUT", f"/v1/workflows/{quote(name, safe='')}", json=dict(body))

    def workflow(self, name: str, executions: int = 20) -> dict[str, Any]:
        return self._json("GET", f"/v1/workflows/{quote(name, safe='')}", params={"executions": executions})

    def delete_workflow(self, name: str) -> dict[str, Any]:
        return self._json("DELETE", f"/v1/workflows/{quote(name, safe='')}")

    def start_execution(self, workflow: str, value: Any = None, name: str | None = None, wait: bool = False,
                        timeout: float | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"input": {} if value is None else value}
        if name:
            body["name"] = name
        return self._json("POST", f"/v1/workflows/{quote(workflow, safe='')}/executions", json=body,
                          params=query(wait="true" if wait else None, timeout=timeout))

    def executions(self, workflow: str, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        return self._json("GET", f"/v1/workflows/{quote(workflow, safe='')}/executions",
                          params=query(status=status, limit=limit)).get("executions", [])

    def execution(self, execution_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/executions/{quote(execution_id, safe='')}")

    def execution_history(self, execution_id: str, after: int = 0) -> list[dict[str, Any]]:
        return self._json("GET", f"/v1/executions/{quote(execution_id, safe='')}/history",
                          params={"after": after}).get("events", [])

    def stop_execution(self, execution_id: str, error: str | None = None, cause: str | None = None) -> dict[str, Any]:
        return self._json("POST", f"/v1/executions/{quote(execution_id, safe='')}/stop",
                          json={"error": error, "cause": cause})
