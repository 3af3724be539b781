// The SDK as a mini-program loads it: a global `wx` with wx.request (and its chunked mode for watch),
// wx.login and wx storage. No mini-program runtime runs here, so `wx` is a small stand-in over Node's http
// module that talks to the live node (tests/e2e/test_apps_sdk.py sets POLYFN_URL and POLYFN_APP): the SDK's
// mini-program code paths and the node are real, only the platform underneath is not WeChat's.
import assert from 'node:assert/strict';
import http from 'node:http';
import { createRequire } from 'node:module';
import { test } from 'node:test';

const URL_ = process.env.POLYFN_URL;
const APP = process.env.POLYFN_APP;
const live = URL_ && APP ? {} : { skip: 'no polyfn node (run through pytest tests/e2e/test_apps_sdk.py)' };

// wx.request as the WeChat base library documents it: {url, method, header, data, responseType,
// enableChunked, success, fail} → a RequestTask with onHeadersReceived, onChunkReceived and abort.
function wxStandIn() {
  const storage = new Map();
  const requests = [];
  return {
    requests,
    getStorageSync: (k) => storage.get(k) ?? '',
    setStorageSync: (k, v) => storage.set(k, v),
    login: ({ fail }) => fail({ errMsg: 'login:fail not in this test' }),
    request(o) {
      requests.push({ url: o.url, chunked: Boolean(o.enableChunked) });
      const headersCbs = [];
      const chunkCbs = [];
      const chunks = [];
      const req = http.request(o.url, { method: o.method, headers: o.header }, (res) => {
        headersCbs.forEach((cb) => cb({ statusCode: res.statusCode, header: res.headers }));
        res.on('data', (c) => {
          if (o.enableChunked) {
            const ab = c.buffer.slice(c.byteOffset, c.byteOffset + c.length);
            chunkCbs.forEach((cb) => cb({ data: ab }));
          } else chunks.push(c);
        });
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          const data = o.responseType === 'arraybuffer' ? body.buffer.slice(body.byteOffset, body.byteOffset + body.length)
            : body.toString('utf8');
          o.success({ statusCode: res.statusCode, header: res.headers, data });
        });
        res.on('error', () => {});
      });
      req.on('error', (e) => { if (!req.aborted) o.fail({ errMsg: `request:fail ${e.message}` }); });
      req.end(o.data);
      return {
        onHeadersReceived: (cb) => headersCbs.push(cb),
        onChunkReceived: (cb) => chunkCbs.push(cb),
        abort: () => { req.aborted = true; req.destroy(); },
      };
    },
  };
}

// A fresh copy of the UMD file, loaded while `globalThis.wx` is the stand-in (the SDK picks its transport then).
function loadInMiniProgram(wx) {
  const require = createRequire(import.meta.url);
  const path = require.resolve('../src/polyfn-cloud.js');
  const saved = { wx: globalThis.wx, cloud: globalThis.polyfnCloud };
  delete require.cache[path];
  globalThis.wx = wx;
  try {
    return require(path);
  } finally {
    delete require.cache[path];
    globalThis.wx = saved.wx;
    globalThis.polyfnCloud = saved.cloud;
  }
}

test('in a mini-program: callFunction and the database go through wx.request, watch through its chunks', live, async () => {
  const wx = wxStandIn();
  const cloud = loadInMiniProgram(wx).init({ env: APP, endpoint: URL_, autoSignIn: 'anonymous' });
  const res = await cloud.callFunction({ name: 'sdk-whoami', data: { n: 1 } });
  assert.equal(res.result.n, 2);
  assert.ok(wx.getStorageSync(`polyfn-cloud:${URL_}:${APP}`).includes('access_token'), 'the session is in wx storage');

  const notes = cloud.database().collection('sdk-notes');
  let deliver;
  const next = () => new Promise((resolve) => { deliver = resolve; });
  let snap = next();
  const watcher = notes.where({ topic: 'mini' }).watch({ onChange: (s) => deliver(s), onError: (e) => deliver(e) });
  assert.equal((await snap).type, 'init');
  snap = next();
  const text = '你好, 世界 — a note with characters of more than one byte 🎉'.repeat(40); // spans chunks
  const { _id } = await notes.add({ data: { topic: 'mini', text } });
  const got = await snap;
  assert.deepEqual([got.docChanges[0].docId, got.docChanges[0].doc.text], [_id, text]);
  await watcher.close();
  assert.ok(wx.requests.some((r) => r.chunked && r.url.endsWith('/db/collection.watch')));
  assert.ok(wx.requests.every((r) => r.url.startsWith(URL_)), 'every request went through wx.request');

  // a refused watch reaches onError with WeChat's code, over the same path
  const refused = await new Promise((resolve) => {
    cloud.database().collection('sdk-secret').watch({ onChange: () => resolve(null), onError: resolve });
  });
  assert.equal(refused.errCode, -502003);
});

test('in a mini-program too old for chunked requests, watch() fails with a clear error', live, async () => {
  const wx = wxStandIn();
  const request = wx.request;
  wx.request = (o) => { const t = request.call(wx, o); delete t.onChunkReceived; return t; };
  const cloud = loadInMiniProgram(wx).init({ env: APP, endpoint: URL_, autoSignIn: 'anonymous' });
  const err = await new Promise((resolve) => {
    cloud.database().collection('sdk-notes').watch({ onChange: () => resolve(null), onError: resolve });
  });
  assert.equal(err.errCode, -501007);
  assert.match(err.errMsg, /enableChunked \(base library 2\.20\.2 or later\)/);
});
