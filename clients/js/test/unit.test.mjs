// The SDK's own logic without a server: the wx-style callback/Promise adapter, init's checks, the session
// store and the token refresh decision, with fetch replaced by a recorder.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import sdk from '../src/polyfn-cloud.mjs';

function withFetch(handler, fn) {
  const saved = globalThis.fetch;
  const calls = [];
  globalThis.fetch = async (url, init) => {
    calls.push({ url, ...init, body: init && init.body });
    const [status, body, headers] = handler(url, init);
    return new Response(typeof body === 'string' ? body : JSON.stringify(body), { status, headers: headers || {} });
  };
  return fn(calls).finally(() => { globalThis.fetch = saved; });
}

const session = (exp) => ({ access_token: `tok-${exp}`, refresh_token: 'pfr_s.x', expires_at: exp, expires_in: 3600, user: { uid: 'u1', provider: 'anonymous' } });

test('init checks env and endpoint', () => {
  assert.throws(() => new sdk.Cloud().init({}), /init\(\{env\}\)/);
  const saved = process.env.POLYFN_URL;
  delete process.env.POLYFN_URL;
  try {
    assert.throws(() => new sdk.Cloud().init({ env: 'a' }), /no endpoint/);
  } finally {
    if (saved !== undefined) process.env.POLYFN_URL = saved;
  }
  process.env.POLYFN_URL = 'http://from-env:9';
  try {
    assert.equal(new sdk.Cloud().init({ env: 'a' }).config.endpoint, 'http://from-env:9');
  } finally {
    if (saved !== undefined) process.env.POLYFN_URL = saved; else delete process.env.POLYFN_URL;
  }
  const c = new sdk.Cloud().init({ env: { functions: 'fn-env', database: 'x' }, endpoint: 'http://h:1/' });
  assert.equal(c.config.env, 'fn-env');
  assert.equal(c._url('call/x'), 'http://h:1/app/fn-env/call/x');
});

test('calls before init fail with errMsg', async () => {
  await assert.rejects(new sdk.Cloud().callFunction({ name: 'x' }), (e) => e.errMsg.startsWith('cloud.callFunction:fail not_initialized'));
});

test('callFunction sends the token and data, maps the answer', () => withFetch((url) => {
  if (url.endsWith('/auth/anonymous')) return [200, session(Date.now() / 1000 + 3600)];
  return [200, { sum: 3 }, { 'x-polyfn-activation-id': 'a'.repeat(32) }];
}, async (calls) => {
  const c = new sdk.Cloud().init({ env: 'e1', endpoint: 'http://h:1' });
  const res = await c.callFunction({ name: 'add', data: { a: 1, b: 2 } });
  assert.deepEqual(res, { result: { sum: 3 }, requestID: 'a'.repeat(32), errMsg: 'cloud.callFunction:ok' });
  assert.equal(calls.length, 2);
  assert.equal(calls[1].url, 'http://h:1/app/e1/call/add');
  assert.equal(calls[1].headers.authorization, `Bearer ${c._session.access_token}`);
  assert.deepEqual(JSON.parse(calls[1].body), { a: 1, b: 2 });
}));

test('a token near expiry is refreshed before the call; concurrent calls share one refresh', () => withFetch((url) => {
  if (url.endsWith('/auth/refresh')) return [200, session(Date.now() / 1000 + 3600)];
  return [200, 'ok'];
}, async (calls) => {
  const c = new sdk.Cloud().init({ env: 'e2', endpoint: 'http://h:1' });
  c._setSession(session(Date.now() / 1000 + 10));
  await Promise.all([c.callFunction({ name: 'a' }), c.callFunction({ name: 'b' }), c.callFunction({ name: 'c' })]);
  assert.equal(calls.filter((x) => x.url.endsWith('/auth/refresh')).length, 1);
  assert.equal(calls.length, 4);
}));

test('errors carry the server\'s code and status; callbacks get them', () => withFetch(() => [401,
  { error: { code: 'token_wrong_app', message: 'the token is for app x' } }], async () => {
  const c = new sdk.Cloud().init({ env: 'e3', endpoint: 'http://h:1', autoSignIn: false });
  c._setSession(session(Date.now() / 1000 + 3600));
  const err = await new Promise((resolve) => c.callFunction({ name: 'a', fail: resolve }));
  assert.equal(err.errCode, 'token_wrong_app');
  assert.equal(err.statusCode, 401);
  assert.equal(err.errMsg, 'cloud.callFunction:fail token_wrong_app: the token is for app x');
}));

test('parameter checks happen before any request', () => withFetch(() => [500, {}], async (calls) => {
  const c = new sdk.Cloud().init({ env: 'e4', endpoint: 'http://h:1' });
  await assert.rejects(c.callFunction({}), /parameter.name should be a string/);
  await assert.rejects(c.uploadFile({ file: new Blob(['x']) }), /cloudPath/);
  assert.equal(calls.length, 0);
}));

test('sessions are kept per endpoint and env', () => {
  const a = new sdk.Cloud().init({ env: 'same', endpoint: 'http://h:1' });
  a._setSession(session(99));
  assert.equal(new sdk.Cloud().init({ env: 'same', endpoint: 'http://h:1' })._session.access_token, 'tok-99');
  assert.equal(new sdk.Cloud().init({ env: 'other', endpoint: 'http://h:1' })._session, null);
});

test('server-sent events are cut at blank lines, in bytes, with or without TextDecoder', () => {
  const text = 'data: {"n": "你好 🎉"}\n\n: keep-alive\n\ndata: {"n": 2}\n\n';
  const bytes = new TextEncoder().encode(text);
  const saved = globalThis.TextDecoder;
  for (const decoder of [saved, undefined]) {
    globalThis.TextDecoder = decoder; // old mini-program base libraries have none
    try {
      const seen = [];
      const feed = sdk._internal.eventParser((d) => seen.push(JSON.parse(d).n));
      for (let i = 0; i < bytes.length; i += 3) feed(bytes.subarray(i, i + 3)); // cut inside characters
      assert.deepEqual(seen, ['你好 🎉', 2]);
    } finally {
      globalThis.TextDecoder = saved;
    }
  }
});
