// The SDK against a live polyfn node (tests/e2e/test_apps_sdk.py starts one and sets POLYFN_URL, POLYFN_APP;
// without them these tests skip). The functions they call are deployed by that pytest module.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import sdk from '../src/polyfn-cloud.mjs';

const URL_ = process.env.POLYFN_URL;
const APP = process.env.POLYFN_APP;
const live = URL_ && APP ? {} : { skip: 'no polyfn node (run through pytest tests/e2e/test_apps_sdk.py)' };
const uploads = process.env.POLYFN_POST_UPLOAD === '1' ? {} : { skip: 'the node\'s object store takes no POST uploads' };

function fresh(options = {}) {
  return new sdk.Cloud().init({ env: APP, endpoint: URL_, persistence: 'none', ...options });
}

test('callFunction signs in anonymously and returns wx.cloud\'s shape', live, async () => {
  const cloud = fresh();
  const res = await cloud.callFunction({ name: 'sdk-whoami', data: { n: 41 } });
  assert.equal(res.errMsg, 'cloud.callFunction:ok');
  assert.equal(res.requestID.length, 32);
  const user = cloud.auth().currentUser;
  assert.equal(user.provider, 'anonymous');
  assert.deepEqual(res.result, { openid: user.uid, env: APP, n: 42 });
});

test('callFunction with success/fail/complete callbacks', live, async () => {
  const cloud = fresh();
  const seen = await new Promise((resolve) => {
    const calls = [];
    const ret = cloud.callFunction({
      name: 'sdk-whoami', data: { n: 1 },
      success: (r) => calls.push(['success', r.result.n]),
      fail: (e) => calls.push(['fail', e.errMsg]),
      complete: () => resolve({ calls, ret }),
    });
  });
  assert.deepEqual(seen.calls, [['success', 2]]);
  assert.equal(seen.ret, undefined);
  const failed = await new Promise((resolve) => {
    cloud.callFunction({ name: 'sdk-no-such-function', fail: (e) => resolve(e) });
  });
  assert.match(failed.errMsg, /^cloud\.callFunction:fail function_not_found: /);
  assert.equal(failed.statusCode, 404);
});

test('a function\'s own error reaches the caller', live, async () => {
  const cloud = fresh();
  await assert.rejects(cloud.callFunction({ name: 'sdk-whoami', data: { fail: true } }), (e) => {
    assert.equal(e.statusCode, 500);
    assert.match(e.errMsg, /^cloud\.callFunction:fail /);
    assert.match(e.message, /asked to fail/);
    return true;
  });
});

test('email sign-up, sign-in and sign-out through auth()', live, async () => {
  const cloud = fresh({ autoSignIn: false });
  const auth = cloud.auth();
  const states = [];
  auth.onAuthStateChanged((u) => states.push(u ? u.provider : null));
  const email = `sdk-${Date.now()}@example.com`;
  const made = await auth.signUpWithEmailAndPassword(email, 'correct horse battery');
  await auth.signOut();
  assert.equal(auth.currentUser, null);
  await assert.rejects(auth.signInWithEmailAndPassword(email, 'nope nope nope'), (e) => e.errCode === 'invalid_credentials');
  const back = await auth.signInWithEmailAndPassword(email, 'correct horse battery');
  assert.equal(back.uid, made.uid);
  const res = await cloud.callFunction({ name: 'sdk-whoami', data: { n: 0 } });
  assert.equal(res.result.openid, made.uid);
  assert.deepEqual(states, [null, 'password', null, 'password']);
});

test('without autoSignIn a call needs a signed-in user', live, async () => {
  const cloud = fresh({ autoSignIn: false });
  await assert.rejects(cloud.callFunction({ name: 'sdk-members', data: {} }), (e) => e.errCode === 'token_missing' && e.statusCode === 401);
});

test('an expired session is refreshed transparently', live, async () => {
  const cloud = fresh();
  await cloud.callFunction({ name: 'sdk-whoami', data: { n: 0 } });
  const uid = cloud.auth().currentUser.uid;
  cloud._session.expires_at = Date.now() / 1000 - 1; // as if the hour had passed
  const old = cloud._session.refresh_token;
  const res = await cloud.callFunction({ name: 'sdk-whoami', data: { n: 0 } });
  assert.equal(res.result.openid, uid);
  assert.notEqual(cloud._session.refresh_token, old); // refreshed (the refresh token rotates each time)
});

test('a revoked session signs in again (a new anonymous user)', live, async () => {
  const cloud = fresh();
  await cloud.callFunction({ name: 'sdk-whoami', data: { n: 0 } });
  const first = cloud.auth().currentUser.uid;
  await cloud._raw('auth', 'POST', 'auth/signout', {}, cloud._session.access_token);
  const res = await cloud.callFunction({ name: 'sdk-whoami', data: { n: 0 } });
  assert.notEqual(res.result.openid, first);
});

test('uploadFile, getTempFileURL, downloadFile, deleteFile', { ...live, ...uploads }, async () => {
  const cloud = fresh();
  const progress = [];
  const body = new Blob([new Uint8Array(3000).fill(7)], { type: 'image/png' });
  const up = cloud.uploadFile({ cloudPath: `sdk/${Date.now()}.png`, file: body });
  up.onProgressUpdate((p) => progress.push(p.progress));
  const { fileID, errMsg } = await up;
  assert.equal(errMsg, 'cloud.uploadFile:ok');
  assert.match(fileID, new RegExp(`^cloud://${APP}\\.app-${APP}/sdk/\\d+\\.png$`));
  assert.equal(progress.at(-1), 100);
  const urls = await cloud.getTempFileURL({ fileList: [fileID, `cloud://${APP}.app-${APP}/sdk/none.png`] });
  assert.equal(urls.fileList[0].status, 0);
  assert.equal(urls.fileList[1].status, 404);
  const got = await fetch(urls.fileList[0].tempFileURL);
  assert.equal(got.status, 200);
  assert.equal((await got.arrayBuffer()).byteLength, 3000);
  const dl = await cloud.downloadFile({ fileID });
  assert.equal(dl.data.size, 3000);
  // another user may read (the default file rule) but not delete
  const other = fresh();
  await other.auth().signInAnonymously();
  assert.equal((await other.getTempFileURL({ fileList: [fileID] })).fileList[0].status, 0);
  const refused = await other.deleteFile({ fileList: [fileID] });
  assert.equal(refused.fileList[0].status, 403);
  const gone = await cloud.deleteFile({ fileList: [fileID] });
  assert.equal(gone.fileList[0].status, 0);
  assert.equal((await cloud.getTempFileURL({ fileList: [fileID] })).fileList[0].status, 404);
});

test('an oversized upload is refused by the POST policy', { ...live, ...uploads }, async () => {
  const cloud = fresh();
  const big = new Blob([new Uint8Array(70 * 1024)]); // the app allows 64 KiB
  await assert.rejects(cloud.uploadFile({ cloudPath: 'sdk/big.bin', file: new Blob([big], { type: '' }) }),
    (e) => e.errCode === 'EntityTooLarge' || e.errCode === 'file_too_large');
  // a lying client that claims a small size still meets the store's own check
  const grant = await cloud._authed('uploadFile', 'POST', 'storage/upload', { cloudPath: 'sdk/liar.bin', size: 10 });
  const form = new FormData();
  for (const [k, v] of Object.entries(grant.data.fields)) form.append(k, v);
  form.append('file', big, 'liar.bin');
  // the store answers EntityTooLarge as soon as the file passes the policy's range, and may close the
  // connection before the client has sent everything (then the client sees a network error)
  const res = await fetch(grant.data.url, { method: 'POST', body: form }).catch((e) => e);
  if (!(res instanceof Error)) {
    assert.ok(res.status >= 400, `stored an oversized upload: ${res.status}`);
    assert.match(await res.text(), /EntityTooLarge|content-length-range|exceeds/);
  }
  const urls = await cloud.getTempFileURL({ fileList: [grant.data.fileID] });
  assert.equal(urls.fileList[0].status, 404);
});
