"""What a function printed before its timeout killed it is kept in its activation (issue #18, item 5): Python
and Node instances, serving one invocation at a time or several, stream the lines of a long invocation ahead
of its result."""

from __future__ import annotations

from .conftest import Server

SLOW = '''import time

def handler(event, context):
    n = int(event.get("n", 5))
    for i in range(n):
        print(f"step {i}", flush=True)
        time.sleep(float(event.get("pause", 0.3)))
    print("done")
    return {"steps": n}
'''


def _lines(server: Server, activation_id: str) -> list[str]:
    return [entry[2] if isinstance(entry, list) else entry["line"] for entry in server.activation(activation_id)["logs"]]


def test_lines_printed_before_a_timeout_are_kept(server: Server) -> None:
    server.deploy("tl-slow", {"handler.py": SLOW}, timeout=2)
    r = server.api.post("/v1/functions/tl-slow/invoke", json={"n": 100, "pause": 0.2})
    assert r.status_code == 504, r.text
    act_id = r.headers["x-polyfn-activation-id"]
    act = server.activation(act_id)
    assert act["status"] == "timeout"
    lines = _lines(server, act_id)
    # ~10 steps fit in 2 s; those printed before the last streamed batch (every 0.1 s after 1 s) are kept
    assert lines[:5] == [f"step {i}" for i in range(5)], lines
    assert "done" not in lines


def test_a_long_invocation_keeps_every_line_in_order(server: Server) -> None:
    server.deploy("tl-long", {"handler.py": SLOW}, timeout=20)
    r = server.api.post("/v1/functions/tl-long/invoke", json={"n": 8, "pause": 0.25})
    assert r.status_code == 200 and r.json() == {"steps": 8}, r.text
    assert _lines(server, r.headers["x-polyfn-activation-id"]) == [f"step {i}" for i in range(8)] + ["done"]


ASYNC_SLOW = '''import asyncio, time

async def handler(event, context):
    n = int(event.get("n", 5))
    for i in range(n):
        print(f"step {i}", flush=True)
        if event.get("block"):
            time.sleep(0.2)  # blocks the instance's event loop: no timer of the instance can run
        else:
            await asyncio.sleep(0.2)
    print("done")
    return {"steps": n}
'''


def test_python_lines_are_kept_at_any_concurrency(server: Server) -> None:
    """Concurrency > 1 runs a sync handler in threads and an async one on the instance's event loop: lines
    printed before a timeout are kept there too — from a sync handler's threads, an async handler, and an
    async handler that blocks the loop — and a run that ends in time keeps every line, in order, once."""
    import threading

    server.deploy("tl-py-conc", {"handler.py": SLOW}, timeout=3, concurrency=4)  # ~15 steps (5 on a loaded machine)
    server.deploy("tl-py-async", {"handler.py": ASYNC_SLOW}, timeout=3)
    got: dict[str, list[str]] = {}

    def slow(key: str, name: str, event: dict[str, object]) -> None:
        r = server.api.post(f"/v1/functions/{name}/invoke", json=event)
        # the first to time out takes its instance with it: the other in flight there ends as crashed
        assert r.status_code == 504 or (r.status_code == 502 and "timed out" in r.text), r.text
        got[key] = _lines(server, r.headers["x-polyfn-activation-id"])

    calls = [threading.Thread(target=slow, args=(f"conc{k}", "tl-py-conc", {"n": 100, "pause": 0.2})) for k in range(2)]
    calls += [threading.Thread(target=slow, args=("async", "tl-py-async", {"n": 100})),
              threading.Thread(target=slow, args=("block", "tl-py-async", {"n": 100, "block": True}))]
    for t in calls:
        t.start()
    for t in calls:
        t.join(60)
    for key in ("conc0", "conc1", "async", "block"):  # every step printed up to the last batch, in order, once
        assert len(got[key]) >= 5 and got[key] == [f"step {i}" for i in range(len(got[key]))], (key, got)
    r = server.api.post("/v1/functions/tl-py-conc/invoke", json={"n": 8, "pause": 0.15})
    assert r.status_code == 200 and r.json() == {"steps": 8}, r.text
    assert _lines(server, r.headers["x-polyfn-activation-id"]) == [f"step {i}" for i in range(8)] + ["done"]


NODE_SLOW = r"""
exports.handler = async (event) => {
  const n = event.n || 5;
  for (let i = 0; i < n; i++) {
    console.log(`step ${i}`);
    await new Promise((r) => setTimeout(r, event.pause || 300));
  }
  console.log('done');
  return { steps: n };
};
"""

NODE_HANG = r"""
exports.handler = async () => {
  console.log('before the loop');
  const start = Date.now();
  while (Date.now() < start + 1100) {}  // past the streaming threshold (1 s at most), the event loop blocked
  console.log('after the threshold');  // sent at once, with the line before, though no timer can run
  process.stdout.write('no newline yet');
  while (true) {}
};
"""


def test_node_lines_printed_before_a_timeout_are_kept(server: Server) -> None:
    """Node streams a long invocation's lines too (`logs` frames), also with several invocations in flight."""
    server.deploy("tl-node", {"index.js": NODE_SLOW}, runtime="node", handler="index.handler", timeout=2,
                  concurrency=4)
    r = server.api.post("/v1/functions/tl-node/invoke", json={"n": 100, "pause": 200})
    assert r.status_code == 504, r.text
    lines = _lines(server, r.headers["x-polyfn-activation-id"])
    assert lines[:5] == [f"step {i}" for i in range(5)], lines
    assert "done" not in lines
    r = server.api.post("/v1/functions/tl-node/invoke", json={"n": 8, "pause": 150})  # a fresh instance
    assert r.status_code == 200 and r.json() == {"steps": 8}, r.text
    assert _lines(server, r.headers["x-polyfn-activation-id"]) == [f"step {i}" for i in range(8)] + ["done"]


def test_node_lines_before_a_blocked_event_loop_are_kept(server: Server) -> None:
    """A handler that blocks Node's event loop: the lines it printed once the invocation ran a while are
    written to the server from inside the print (no timer needed); an unfinished line is not a line."""
    server.deploy("tl-node-hang", {"index.js": NODE_HANG}, runtime="node", handler="index.handler", timeout=5)
    r = server.api.post("/v1/functions/tl-node-hang/invoke", json={})
    assert r.status_code == 504, r.text
    lines = _lines(server, r.headers["x-polyfn-activation-id"])
    assert lines == ["before the loop", "after the threshold"], lines
