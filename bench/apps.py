"""The app platform's costs (issue 20's targets), each against a peer measured in the same run:

1. callFunction round trip from the client SDK **in a browser** (headless Chromium) to a warm function:
   p50/p99, against the same function called with a plain `fetch('/fn/NAME')` from the same page (no app,
   no token, no identity): the ratio is what the app layer costs. Target: p50 ≤ 5 ms on loopback.
2. The database from the SDK in the same browser page (no target in the issue): `doc(id).get()` and `add()`
   under the collection's rule, and a change's trip to a watcher (from calling `add()` until `watch()`'s
   snapshot holds the document), against callFunction of the same page.
3. 1,000 signed-in users calling at once (each its own token): errors (target 0), p50/p99, calls/s; against
   the same load of anonymous `/fn/` calls.
4. Token verification: the node's cached `verify` per call, against an uncached JWT decode (PyJWT) and a bare
   dict lookup, in-process. Target: ≤ 20 µs added per call.

    .venv/bin/python bench/apps.py [--calls 400] [--users 1000] [--rounds 3]

Needs /usr/bin/chromium and Playwright for parts 1 and 2 (skipped with a note otherwise). The machine is shared by
other work: read the same-run ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PolyfnServer, fmt, percentile, print_header, table

HELLO_PY = """import json


def handler(event, context):
    if "httpMethod" in event:  # the same call through /fn/: an API Gateway event
        event = json.loads(event["body"] or "{}")
    return {"n": event.get("n")}
"""

PAGE = """<!doctype html><meta charset=utf-8><title>bench</title>
<script src="/sdk/polyfn-cloud.js"></script>
<script>
async function measure(n, fn) {
  const t = [];
  for (let i = 0; i < 20; i++) await fn(i);          // warm: instance, connection, token
  for (let i = 0; i < n; i++) { const a = performance.now(); await fn(i); t.push(performance.now() - a); }
  return t;
}
window.runBench = async (n) => {
  wx.cloud.init({ env: 'bench', persistence: 'none' });
  const sdk = await measure(n, (i) => wx.cloud.callFunction({ name: 'hello-py', data: { n: i } }));
  const raw = await measure(n, (i) => fetch('/fn/hello-py', { method: 'POST', body: JSON.stringify({ n: i }),
    headers: { 'content-type': 'application/json' } }).then((r) => r.json()));
  return { sdk, raw };
};
window.runDb = async (n) => {
  wx.cloud.init({ env: 'bench', persistence: 'none' });
  const items = wx.cloud.database().collection('bench-notes');
  const { _id } = await items.add({ data: { n: -1 } });
  const call = await measure(n, (i) => wx.cloud.callFunction({ name: 'hello-py', data: { n: i } }));
  const get = await measure(n, () => items.doc(_id).get());
  const add = await measure(n, (i) => items.add({ data: { n: i } }));
  let want = -1, arrived = null, seq = 0;
  const live = items.where({ topic: 'live' }).orderBy('n', 'desc').limit(1);
  await new Promise((ready, failed) => {
    live.watch({ onChange: (s) => { if (s.type === 'init') ready(); else if (s.docs[0] && s.docs[0].n === want) arrived(); },
                 onError: failed });
  });
  const watch = await measure(n, () => new Promise((resolve) => {
    want = ++seq; arrived = resolve;
    items.add({ data: { n: want, topic: 'live' } });
  }));
  return { call, get, add, watch };
};
</script>"""


def stats(samples: list[float]) -> tuple[float, float, float]:
    return statistics.median(samples), percentile(samples, 99), statistics.fmean(samples)


def browser_round_trip(server: PolyfnServer, calls: int) -> list[list[str]] | str:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "skipped: Playwright is not installed"
    if not Path("/usr/bin/chromium").exists():
        return "skipped: /usr/bin/chromium is missing (apt-get install chromium)"
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "index.html").write_text(PAGE)
        assert server.api is not None
        server.api.json("PUT", "/v1/sites/bench", {"files": {"index.html": PAGE}})
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        page = browser.new_page()
        page.goto(server.url("/sites/bench/"))
        out = page.evaluate("(n) => window.runBench(n)", calls)
        browser.close()
    sdk, raw = stats(out["sdk"]), stats(out["raw"])
    return [["SDK callFunction (app, token, identity)", fmt(sdk[0]), fmt(sdk[1]), fmt(sdk[2]), fmt(sdk[0] / raw[0])],
            ["plain fetch /fn/ (peer)", fmt(raw[0]), fmt(raw[1]), fmt(raw[2]), "1.00"]]


def browser_database(server: PolyfnServer, calls: int) -> list[list[str]] | str:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "skipped: Playwright is not installed"
    if not Path("/usr/bin/chromium").exists():
        return "skipped: /usr/bin/chromium is missing (apt-get install chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        page = browser.new_page()
        page.goto(server.url("/sites/bench/"))
        out = page.evaluate("(n) => window.runDb(n)", calls)
        browser.close()
    call = stats(out["call"])
    rows = []
    for label, key in (("doc(id).get() (rule: creator)", "get"), ("collection.add()", "add"),
                       ("add() → watch() snapshot holding it", "watch")):
        st = stats(out[key])
        rows.append([label, fmt(st[0]), fmt(st[1]), fmt(st[2]), fmt(st[0] / call[0])])
    rows.append(["callFunction (peer)", fmt(call[0]), fmt(call[1]), fmt(call[2]), "1.00"])
    return rows


async def many_users(server: PolyfnServer, users: int, rounds: int) -> tuple[list[list[str]], int]:
    base = server.url("")
    # idle connections expire before the node's keep-alive timeout (5 s), so no request races a server close
    limits = httpx.Limits(max_connections=users, max_keepalive_connections=users, keepalive_expiry=2.0)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as http:
        sem = asyncio.Semaphore(200)  # sign-ups: a burst, not a stampede of new TCP connections

        async def sign_in() -> str:
            async with sem:
                r = await http.post("/app/bench/auth/anonymous")
                r.raise_for_status()
                return r.json()["access_token"]

        tokens = await asyncio.gather(*(sign_in() for _ in range(users)))
        assert len(set(tokens)) == users

        async def one(path: str, token: str | None, i: int) -> tuple[float, bool]:
            headers = {"authorization": f"Bearer {token}"} if token else {}
            t = time.perf_counter()
            try:
                r = await http.post(path, json={"n": i}, headers=headers)
                ok = r.status_code == 200 and r.json()["n"] == i
            except httpx.HTTPError:
                ok = False
            return (time.perf_counter() - t) * 1000, ok

        rows, errors = [], 0
        for label, path, with_token in ((f"{users:,} signed-in users, callFunction", "/app/bench/call/hello-py", True),
                                        (f"{users:,} anonymous /fn/ calls (peer)", "/fn/hello-py", False)):
            lat: list[float] = []
            bad = 0
            t0 = time.perf_counter()
            for _ in range(rounds):
                res = await asyncio.gather(*(one(path, tok if with_token else None, i)
                                             for i, tok in enumerate(tokens)))
                lat += [r[0] for r in res]
                bad += sum(1 for r in res if not r[1])
            wall = time.perf_counter() - t0
            errors += bad if with_token else 0
            rows.append([label, str(len(lat)), str(bad), fmt(statistics.median(lat)), fmt(percentile(lat, 99)),
                         fmt(len(lat) / wall, 0)])
        return rows, errors


def verification_cost(n: int = 200_000) -> list[list[str]]:
    from polyfn.apps.model import App, AppConfig
    from polyfn.apps.service import AppService
    from polyfn.apps.tokens import TokenSigner
    from polyfn.auth.ratelimit import Limiter
    from polyfn.auth.secrets import SecretBox

    with tempfile.TemporaryDirectory() as d:
        signer = TokenSigner(SecretBox(Path(d) / "node.key").derive)
        now = time.time()
        token = signer.issue({"aud": "bench", "sub": "u1", "iat": int(now), "exp": int(now) + 3600, "sid": "s1"}, now)
        svc = AppService(None, signer, Limiter())  # type: ignore[arg-type]
        svc.apps = {"bench": App(id="bench", config=AppConfig())}
        svc.verify("bench", token)
        table_ = {token: 1}

        def per_call(fn: object, count: int) -> float:
            t = time.perf_counter()
            for _ in range(count):
                fn()  # type: ignore[operator]
            return (time.perf_counter() - t) / count * 1e6

        bare = per_call(lambda: table_.get(token), n)
        cached = per_call(lambda: svc.verify("bench", token), n)
        decode = per_call(lambda: signer.decode(token, "bench", now), n // 20)
    return [["verify (cached, the hot path)", fmt(cached), fmt(cached / bare)],
            ["JWT decode + HMAC check (uncached, PyJWT)", fmt(decode), fmt(decode / bare)],
            ["dict lookup (floor)", fmt(bare, 3), "1.00"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=400, help="measured calls per path in the browser")
    ap.add_argument("--users", type=int, default=1000, help="signed-in users calling at once")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every user calling once")
    args = ap.parse_args()
    print_header("polyfn app platform: callFunction, the database, many users, token verification")
    with PolyfnServer() as server:
        assert server.api is not None
        server.api.json("POST", "/v1/apps", {"id": "bench", "signup_burst": 100_000, "signup_rate": 10_000})
        server.deploy("hello-py", {"handler.py": HELLO_PY}, flavor="aws", handler="handler.handler",
                      concurrency=8, max_instances=4)
        server.api.json("POST", "/wx/database/database.createCollection", {"collection": "bench-notes"})
        print(f"isolation: {server.isolation}\n")

        print("## 1. callFunction round trip from the SDK in headless Chromium (ms; warm function)")
        rows = browser_round_trip(server, args.calls)
        if isinstance(rows, str):
            print(rows + "\n")
        else:
            print(table(["path", "p50", "p99", "mean", "p50 ratio"], rows) + "\n")

        print("## 2. the database from the SDK in headless Chromium (ms)")
        rows4 = browser_database(server, args.calls)
        if isinstance(rows4, str):
            print(rows4 + "\n")
        else:
            print(table(["operation", "p50", "p99", "mean", "p50 ratio to callFunction"], rows4) + "\n")

        print(f"## 3. {args.users} signed-in users calling at once, {args.rounds} rounds (ms)")
        rows2, errors = asyncio.run(many_users(server, args.users, args.rounds))
        print(table(["load", "calls", "errors", "p50", "p99", "calls/s"], rows2))
        print(f"errors among signed-in users' calls: {errors} (target 0)\n")

    print("## 4. token verification per call, in-process (µs)")
    print(table(["check", "µs/call", "ratio to dict lookup"], verification_cost()))
    print("\nThe machine is shared: compare rows of one run, not runs.")


if __name__ == "__main__":
    main()
