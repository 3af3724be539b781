// wx.cloud.database() against a live polyfn node, as end users under the app's security rules
// (tests/e2e/test_apps_sdk.py starts the node, sets POLYFN_URL and POLYFN_APP, and makes the collections:
// sdk-notes with the default rule (creator only), sdk-posts read-all, sdk-secret none).
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';

import sdk from '../src/polyfn-cloud.mjs';

const URL_ = process.env.POLYFN_URL;
const APP = process.env.POLYFN_APP;
const live = URL_ && APP ? {} : { skip: 'no polyfn node (run through pytest tests/e2e/test_apps_sdk.py)' };

function user(options = {}) {
  return new sdk.Cloud().init({ env: APP, endpoint: URL_, persistence: 'none', ...options });
}

// Snapshots of a watcher, awaited one at a time.
function follow(query) {
  const seen = [];
  const waiting = [];
  let failed = null;
  const watcher = query.watch({
    onChange: (snap) => { const w = waiting.shift(); if (w) w.resolve(snap); else seen.push(snap); },
    onError: (e) => { failed = e; const w = waiting.shift(); if (w) w.reject(e); },
  });
  return {
    watcher,
    next() {
      if (seen.length) return Promise.resolve(seen.shift());
      if (failed) return Promise.reject(failed);
      return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
    },
  };
}

test('add, get, update and remove one\'s own documents', live, async () => {
  const cloud = user();
  const db = cloud.database();
  const _ = db.command;
  const notes = db.collection('sdk-notes');
  const due = new Date('2026-12-24T18:00:00Z');
  const added = await notes.add({ data: { text: 'first', n: 1, due, at: db.serverDate() } });
  assert.equal(added.errMsg, 'collection.add:ok');
  assert.match(added._id, /^[0-9a-f]{32}$/);
  await notes.add({ data: { text: 'second', n: 2 } });
  const me = cloud.auth().currentUser;

  const { data: doc, errMsg } = await notes.doc(added._id).get();
  assert.equal(errMsg, 'document.get:ok');
  assert.equal(doc._openid, me.uid); // stamped by the node: the caller's openid
  assert.ok(doc.due instanceof Date && doc.due.getTime() === due.getTime());
  assert.ok(doc.at instanceof Date && Math.abs(doc.at.getTime() - Date.now()) < 60_000);

  const found = await notes.where({ n: _.gte(1) }).orderBy('n', 'desc').field({ text: true }).get();
  assert.deepEqual(found.data.map((d) => d.text), ['second', 'first']);
  assert.equal((await notes.where({ n: _.gt(1) }).count()).total, 1);

  const upd = await notes.doc(added._id).update({ data: { n: _.inc(10), tags: ['a'] } });
  assert.deepEqual(upd.stats, { updated: 1 });
  assert.equal((await notes.doc(added._id).get()).data.n, 11);
  const set = await notes.doc('mine-1').set({ data: { text: 'by id' } });
  assert.deepEqual(set.stats, { updated: 0, created: 1 });
  assert.equal((await notes.doc('mine-1').get()).data._openid, me.uid);
  assert.deepEqual((await notes.doc(added._id).remove()).stats, { removed: 1 });
  await assert.rejects(notes.doc(added._id).get(), (e) => e.errCode === -1 && e.errMsg === `document.get:fail document with _id ${added._id} does not exist`);
  const nothrow = cloud.database({ throwOnNotFound: false });
  assert.equal((await nothrow.collection('sdk-notes').doc(added._id).get()).data, null);
});

test('callbacks: success, fail and complete', live, async () => {
  const db = user().database();
  const got = await new Promise((resolve) => {
    const r = db.collection('sdk-notes').get({ success: (res) => resolve(res), fail: resolve });
    assert.equal(r, undefined);
  });
  assert.equal(got.errMsg, 'collection.get:ok');
  const err = await new Promise((resolve) => { db.collection('sdk-no-such').get({ fail: resolve }); });
  assert.equal(err.errCode, -502005);
  assert.match(err.errMsg, /^collection\.get:fail -502005 database collection not exists: sdk-no-such$/);
});

test('another user neither sees nor touches someone\'s documents (403)', live, async () => {
  const ann = user().database().collection('sdk-notes');
  const bob = user().database().collection('sdk-notes');
  const { _id } = await ann.add({ data: { text: 'ann\'s secret' } });
  const { _id: bobs } = await bob.add({ data: { text: 'bob\'s' } });
  const all = await bob.get();
  assert.ok(all.data.every((d) => d._id !== _id), 'a query returns only the caller\'s documents');
  assert.ok(all.data.some((d) => d._id === bobs));
  for (const attempt of [
    () => bob.doc(_id).get(), () => bob.doc(_id).update({ data: { text: 'mine now' } }), () => bob.doc(_id).remove(),
    () => bob.doc(_id).set({ data: { text: 'overwritten' } }),
  ]) {
    await assert.rejects(attempt(), (e) => e.errCode === -502003 && e.statusCode === 403 && /permission denied/.test(e.errMsg));
  }
  // a bulk update touches only the caller's own documents
  const bulk = await bob.where({ text: 'ann\'s secret' }).update({ data: { text: 'x' } });
  assert.equal(bulk.stats.updated, 0);
  assert.equal((await ann.doc(_id).get()).data.text, 'ann\'s secret');
  // nor can anyone claim another owner
  await assert.rejects(bob.add({ data: { text: 'forged', _openid: 'someone-else' } }), (e) => e.errCode === -501007);
});

test('a read-all collection: everyone reads, only the creator writes', live, async () => {
  const ann = user().database().collection('sdk-posts');
  const bob = user().database().collection('sdk-posts');
  const { _id } = await ann.add({ data: { title: 'hello world' } });
  assert.equal((await bob.doc(_id).get()).data.title, 'hello world');
  await assert.rejects(bob.doc(_id).update({ data: { title: 'defaced' } }), (e) => e.errCode === -502003 && e.statusCode === 403);
  await ann.doc(_id).update({ data: { title: 'hello again' } });
  assert.equal((await bob.doc(_id).get()).data.title, 'hello again');
});

test('a collection no client may use refuses reads, writes and watches', live, async () => {
  const secret = user().database().collection('sdk-secret');
  await assert.rejects(secret.get(), (e) => e.errCode === -502003);
  await assert.rejects(secret.add({ data: { x: 1 } }), (e) => e.errCode === -502003);
  const w = follow(secret);
  await assert.rejects(w.next(), (e) => e.errCode === -502003 && e.statusCode === 403);
});

test('without a signed-in user the database refuses (token_missing)', live, async () => {
  const db = user({ autoSignIn: false }).database();
  await assert.rejects(db.collection('sdk-notes').get(), (e) => e.errCode === 'token_missing' && e.statusCode === 401);
});

test('watch(): the caller\'s changes arrive live, another user\'s never', live, async () => {
  const annCloud = user();
  const db = annCloud.database();
  const notes = db.collection('sdk-notes');
  await notes.add({ data: { text: 'before', topic: 'watch' } });
  const w = follow(notes.where({ topic: 'watch' }).orderBy('text', 'asc'));
  const init = await w.next();
  assert.equal(init.type, 'init');
  assert.deepEqual(init.docs.map((d) => d.text), ['before']);

  const bob = user().database().collection('sdk-notes');
  await bob.add({ data: { text: 'bob was here', topic: 'watch' } }); // not ann's: never delivered

  const { _id } = await notes.add({ data: { text: 'added', topic: 'watch', at: new Date(5) } });
  const added = await w.next();
  assert.equal(added.docChanges.length, 1);
  assert.deepEqual([added.docChanges[0].dataType, added.docChanges[0].queueType, added.docChanges[0].docId],
    ['add', 'enqueue', _id]);
  assert.ok(added.docChanges[0].doc.at instanceof Date);
  assert.deepEqual(added.docs.map((d) => d.text), ['added', 'before']);

  await notes.doc(_id).update({ data: { text: 'changed' } });
  const changed = await w.next();
  assert.equal(changed.docChanges[0].queueType, 'update');
  assert.deepEqual(changed.docChanges[0].updatedFields, { text: 'changed' });

  await notes.doc(_id).update({ data: { topic: 'elsewhere' } }); // leaves the query
  assert.equal((await w.next()).docChanges[0].queueType, 'dequeue');
  await w.watcher.close();
  await notes.add({ data: { text: 'after close', topic: 'watch' } });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await Promise.race([w.next().then(() => 'delivered'), new Promise((r) => setTimeout(() => r('none'), 300))]), 'none');
});

test('doc(id).watch() follows one document', live, async () => {
  const notes = user().database().collection('sdk-notes');
  const { _id } = await notes.add({ data: { text: 'one' } });
  const w = follow(notes.doc(_id));
  assert.deepEqual((await w.next()).docs.map((d) => d._id), [_id]);
  await notes.doc(_id).remove();
  const gone = await w.next();
  assert.deepEqual([gone.docChanges[0].dataType, gone.docs.length], ['remove', 0]);
  await w.watcher.close();
});

// A TCP relay to the node whose connections can be cut, as a network change or a proxy restart would.
async function relay() {
  const target = new URL(URL_);
  const sockets = new Set();
  const link = { accepted: 0 };
  const server = net.createServer((client) => {
    link.accepted += 1;
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const [a, b] of [[client, upstream], [upstream, client]]) {
      sockets.add(a);
      a.pipe(b);
      a.on('error', () => {});
      a.on('close', () => { sockets.delete(a); b.destroy(); });
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(link, {
    url: `http://127.0.0.1:${server.address().port}`,
    cut() { for (const s of sockets) s.destroy(); },
    close() { this.cut(); return new Promise((resolve) => server.close(resolve)); },
  });
}

test('watch() reconnects after the connection breaks and hands on what changed meanwhile', live, async () => {
  const link = await relay();
  try {
    const cloud = new sdk.Cloud().init({ env: APP, endpoint: link.url, persistence: 'none' });
    const notes = cloud.database().collection('sdk-notes');
    const { _id: kept } = await notes.add({ data: { topic: 'reconnect', text: 'kept' } });
    const { _id: dropped } = await notes.add({ data: { topic: 'reconnect', text: 'to be removed' } });
    const w = follow(notes.where({ topic: 'reconnect' }));
    assert.equal((await w.next()).docs.length, 2);
    // the same user, straight to the node, while the watcher's connection is down
    const direct = user();
    direct._session = cloud._session;
    const fresh = direct.database().collection('sdk-notes');
    link.cut();
    const before = link.accepted;
    const { _id: added } = await fresh.add({ data: { topic: 'reconnect', text: 'added while away' } });
    await fresh.doc(dropped).remove();
    await fresh.doc(kept).update({ data: { text: 'kept, changed' } });
    // whether the watcher was back before each write or not, it ends up holding the same documents
    const texts = new Set();
    let snap;
    do {
      snap = await w.next();
      for (const c of snap.docChanges) texts.add(`${c.dataType}:${c.docId}`);
    } while (!(snap.docs.length === 2 && snap.docs.some((d) => d.text === 'kept, changed')));
    assert.deepEqual(new Set(snap.docs.map((d) => d._id)), new Set([kept, added]));
    assert.ok(link.accepted > before, 'the watcher opened a new connection');
    assert.ok(texts.has(`add:${added}`) && texts.has(`remove:${dropped}`) && texts.has(`update:${kept}`), [...texts].join());
    await w.watcher.close();
  } finally {
    await link.close();
  }
});
