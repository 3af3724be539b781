"""Firebase's callable protocol with the real `firebase` npm SDK (Auth and Functions pointed at the node with
connectAuthEmulator / connectFunctionsEmulator), against Node v1 and v2 `onCall` handlers and a Python
`https_fn.on_call` handler; and the ID token checks of the protocol's face."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .conftest import Server, start_server
from .jsclients import run_node

NODE_V2 = """
const { onCall, HttpsError } = require('firebase-functions/v2/https');
const logger = require('firebase-functions/logger');
exports.addMessage = onCall((request) => {
  if (!request.auth) throw new HttpsError('unauthenticated', 'sign in first');
  if (!request.data.text) throw new HttpsError('invalid-argument', 'text is required', { field: 'text' });
  logger.info('adding', request.data.text);
  return { text: request.data.text.toUpperCase(), uid: request.auth.uid,
           provider: request.auth.token.firebase.sign_in_provider };
});
"""

NODE_V1 = """
const functions = require('firebase-functions/v1');
exports.hello = functions.https.onCall((data, context) => ({
  hi: data.name, big: data.big, uid: context.auth ? context.auth.uid : null,
}));
"""

PYTHON = """
from firebase_functions import https_fn


@https_fn.on_call()
def greet(req: https_fn.CallableRequest) -> dict:
    if "name" not in req.data:
        raise https_fn.HttpsError(https_fn.FunctionsErrorCode.FAILED_PRECONDITION, "who?", {"need": "name"})
    return {"greeting": f"hello {req.data['name']}", "uid": req.auth.uid if req.auth else None}
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("polyfn-firebase"))
    s.api.post("/v1/apps", json={"id": "fire-app"}).raise_for_status()
    s.deploy("add-message", {"index.js": NODE_V2})  # detected: gcp, export addMessage; callable as addMessage
    s.deploy("hello", {"index.js": NODE_V1}, flavor="gcp", handler="index.hello")
    s.deploy("greet", {"main.py": PYTHON}, flavor="gcp", handler="main.greet")
    s.deploy("crash", {"index.js": "exports.crash = (req, res) => { process.exit(3); };"}, flavor="gcp",
             handler="index.crash")
    yield s
    s.stop()


@pytest.mark.timeout(600)  # many real clients and processes in one test: slow on a loaded machine
def test_the_firebase_sdk_signs_in_and_calls_functions(node: Server) -> None:
    spec = node.api.get("/v1/functions/add-message").json()["spec"]
    assert spec["flavor"] == "gcp" and spec["handler"].endswith("addMessage")
    out = run_node("interop/firebase.mjs", {"POLYFN_URL": node.url, "POLYFN_APP": "fire-app"})
    assert out["unauthenticated"]["code"] == "functions/unauthenticated"
    uid = out["anonymous"]["uid"]
    assert out["anonymous"]["isAnonymous"] is True and len(uid) == 28
    assert out["claims"] == {"provider": "anonymous", "aud": "fire-app", "sub": uid}
    assert out["v2"] == {"result": {"text": "HELLO", "uid": uid, "provider": "anonymous"}}
    # (this SDK version appends the HTTP status to the message: "text is required [400]")
    assert out["invalid"]["code"] == "functions/invalid-argument" and out["invalid"]["details"] == {"field": "text"}
    assert out["invalid"]["message"].startswith("text is required")
    assert out["v1"] == {"result": {"hi": "ann", "big": 12345678901, "uid": uid}}
    assert out["python"] == {"result": {"greeting": "hello bob", "uid": uid}}
    assert out["pythonError"]["code"] == "functions/failed-precondition"
    assert out["pythonError"]["message"].startswith("who?") and out["pythonError"]["details"] == {"need": "name"}
    assert out["missing"]["code"] == "functions/not-found"
    assert out["crash"]["code"] == "functions/internal"
    assert out["password"] == {"same": True, "email": out["password"]["email"], "anonymousUid": True}
    assert out["wrongPassword"] == "auth/invalid-credential"
    assert out["afterPassword"]["result"]["provider"] == "password"
    assert out["tokenRefresh"] == 3


def test_bad_id_tokens_are_refused_before_the_function_runs(node: Server) -> None:
    for token, code in (("not-a-jwt", "token_invalid"), ("a.b.c", "token_invalid")):
        r = node.http.post("/fire-app/us-central1/addMessage", json={"data": {"text": "x"}},
                           headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"
        assert r.headers["x-polyfn-error"] == code
    other = node.api.post("/v1/apps", json={"id": "other-app"})
    assert other.status_code == 201
    t = node.http.post("/app/other-app/auth/anonymous").json()["access_token"]
    r = node.http.post("/fire-app/us-central1/addMessage", json={"data": {"text": "x"}},
                       headers={"authorization": f"Bearer {t}"})
    assert (r.status_code, r.headers["x-polyfn-error"]) == (401, "token_wrong_app")
    # the protocol's own checks, in its own shape
    r = node.http.post("/fire-app/us-central1/addMessage", json={"nodata": 1})
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    # a forged Authorization header on the plain HTTP trigger gives no identity to the handler
    r = node.http.post("/fn/add-message", json={"data": {"text": "x"}}, headers={"authorization": f"Bearer {t}"})
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"
