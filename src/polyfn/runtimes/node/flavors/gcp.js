'use strict';
// Google Cloud Functions (Node.js): HTTP functions `exports.helloWorld = (req, res) => res.send(...)` with
// Express-like req/res, functions registered with `functions.http('name', fn)` /
// `functions.cloudEvent('name', fn)` from '@google-cloud/functions-framework' (provided by polyfn), and
// legacy background functions `(data, context[, callback])`. An uncaught error answers 500 with
// `X-Google-Status: crash`, as the Functions Framework does. Over HTTP, a CloudEvent function (registered, or
// FUNCTION_SIGNATURE_TYPE=cloudevent) reads a binary- or structured-mode CloudEvent, and with
// FUNCTION_SIGNATURE_TYPE=event a background function reads a legacy event (`{data, context}`, the older flat
// shape, a raw Pub/Sub push, or a binary CloudEvent whose body is the data); a request that is no such event
// answers 400 saying what was expected. (The type-by-type legacy ⇄ CloudEvent conversion is the Python
// flavor's; events from polyfn's triggers arrive already shaped by the server.)
const { EventEmitter } = require('events');
const c = require('./common');
const registry = require('../provided/functions-framework')._registry;

const convention = 'Google Cloud Functions `exports.NAME = (req, res) => {...}` (or `functions.http(NAME, fn)`)';

const STATUS_TEXT = { 200: 'OK', 201: 'Created', 204: 'No Content', 400: 'Bad Request', 401: 'Unauthorized',
  403: 'Forbidden', 404: 'Not Found', 500: 'Internal Server Error' };

function request(inv) {
  const headers = c.headerObject(inv.headers);
  const url = (inv.path || '/') + (inv.query ? `?${inv.query}` : '');
  const req = {
    method: inv.method, url, originalUrl: url, path: inv.path || '/', headers,
    query: c.queryObjects(inv.query).single, body: c.parsedBody(inv), rawBody: inv.body,
    protocol: 'http', hostname: (headers.host || 'localhost').split(':')[0], ip: '127.0.0.1', params: {},
    get(name) { return headers[String(name).toLowerCase()]; },
    header(name) { return headers[String(name).toLowerCase()]; },
    is(type) { return (headers['content-type'] || '').includes(type.replace('*', '')); },
  };
  // the caller polyfn verified (an app user's token), for firebase-functions' onCall; hidden like Express internals
  Object.defineProperty(req, '_polyfnIdentity', { value: inv.identity || null, enumerable: false });
  return req;
}

// res: what an Express response offers that HTTP functions use. Resolves `finished` once ended. `res.write`
// streams (with `io`): the status and headers go out with the first write, each write as it is made, as the
// Functions Framework's Express response does; see `streamWrites`.
function response(finish) {
  const res = Object.assign(new EventEmitter(), {
    statusCode: 200, headersSent: false, locals: {}, _headers: [],
    status(code) { res.statusCode = Number(code); return res; },
    set(field, value) {
      if (typeof field === 'object') { for (const [k, v] of Object.entries(field)) res.set(k, v); return res; }
      res._headers = res._headers.filter(([k]) => k.toLowerCase() !== String(field).toLowerCase());
      for (const v of Array.isArray(value) ? value : [value]) res._headers.push([String(field), String(v)]);
      return res;
    },
    header(f, v) { return res.set(f, v); },
    setHeader(f, v) { res.set(f, v); return res; },
    append(f, v) { res._headers.push([String(f), String(v)]); return res; },
    get(f) { const h = res._headers.find(([k]) => k.toLowerCase() === String(f).toLowerCase()); return h && h[1]; },
    getHeader(f) { return res.get(f); },
    type(t) { return res.set('content-type', t.includes('/') ? t : ({ json: 'application/json', html: 'text/html; charset=utf-8', text: 'text/plain; charset=utf-8' }[t] || t)); },
    send(body) {
      let headers;
      let raw;
      if (body === undefined || body === null) [headers, raw] = [[], Buffer.alloc(0)];
      else if (typeof body === 'string') [headers, raw] = [[['content-type', 'text/html; charset=utf-8']], Buffer.from(body)];
      else if (typeof body === 'number' && arguments.length === 1) { res.statusCode = body; [headers, raw] = [[c.TEXT_CT], Buffer.from(STATUS_TEXT[body] || String(body))]; }
      else [headers, raw] = c.encodeValue(body);
      return finish(res.statusCode, c.mergeHeaders(headers, res._headers), raw);
    },
    json(value) { return finish(res.statusCode, c.mergeHeaders([c.JSON_CT], res._headers), Buffer.from(JSON.stringify(value === undefined ? null : value))); },
    end(data, encoding, cb) {
      if (typeof data === 'function') [data, cb] = [null, data];
      if (typeof encoding === 'function') cb = encoding;
      const out = finish(res.statusCode, res._headers, data == null ? Buffer.alloc(0) : Buffer.from(data, typeof encoding === 'string' ? encoding : 'utf8'));
      if (typeof cb === 'function') process.nextTick(cb);
      return out;
    },
    write(chunk) { res._chunks = res._chunks || []; res._chunks.push(Buffer.from(chunk)); return true; },
    flushHeaders() {},
    sendStatus(code) { res.statusCode = code; return res.send(STATUS_TEXT[code] || String(code)); },
    redirect(a, b) { const [code, url] = typeof a === 'number' ? [a, b] : [302, a]; res.statusCode = code; res.set('location', url); return res.end(); },
  });
  return res;
}

// `res.write(chunk[, encoding][, cb])` on a call that can stream: the first write sends the status and headers
// (`Content-Type` as set, else none, as Node's http), each write goes out at once; `write` returns false while
// the connection is backed up and `res` emits 'drain' when it is not, so `pipeline(readable, res)`-style
// back-pressure works. `end()` (or `send`/`json` after a write: their body is the last chunk) ends the stream.
// The client going emits 'close' and later writes do nothing (their callback gets an error).
// `resolve` gets the invocation's outcome; `ended` says whether the response ended.
function streamWrites(res, io, meta, resolve) {
  let streaming = false;
  let closed = false;
  let pending = 0;
  const goneError = () => Object.assign(new Error('the client closed the connection'), { code: 'ERR_STREAM_DESTROYED' });
  const outcome = (error) => {
    if (closed) return;
    closed = true;
    res.writableEnded = true;
    resolve(error ? { streamed: true, status: res.statusCode, error } : { streamed: true, status: res.statusCode });
  };
  const chunk = (buf, cb) => {
    if (!buf.length) { if (cb) process.nextTick(cb); return true; }
    pending += 1;
    let sync = true;
    io.chunk(buf, () => {
      pending -= 1;
      if (cb) cb();
      if (!sync && pending === 0) res.emit('drain');
    });
    sync = false;
    return pending === 0;
  };
  io.onCancel(() => {
    if (closed) return;
    res.destroyed = true;
    outcome(null);
    res.emit('close');
  });
  res.write = (data, encoding, cb) => {
    if (typeof encoding === 'function') [encoding, cb] = [undefined, encoding];
    if (closed) { if (cb) process.nextTick(cb, goneError()); return false; }
    if (!streaming) {
      streaming = true;
      res.headersSent = true;
      io.head(res.statusCode, res._headers);
    }
    return chunk(Buffer.isBuffer(data) ? data : Buffer.from(data, encoding || 'utf8'), cb);
  };
  return {
    get streaming() { return streaming; },
    // finish(status, headers, body) once streaming: the body is the last chunk, then the end
    finish(body) {
      if (closed) return res;
      const last = () => { outcome(null); res.emit('finish'); res.emit('close'); };
      if (body && body.length) io.chunk(body, last); else last();
      return res;
    },
    fail(err) { outcome(c.errorPayload(err, meta)); },
  };
}

function isCloudEventFn(handler) {
  return registry.kind.get(handler) === 'cloudevent';
}

const badRequest = (message) => ({ status: 400, headers: [c.TEXT_CT], body: Buffer.from(message) });
const OK = () => ({ status: 200, headers: [c.TEXT_CT], body: Buffer.from('OK') });

// An HTTP request carrying a CloudEvent (binary mode `ce-*` headers, or structured JSON), else null.
function cloudEventFromHttp(inv) {
  const h = c.headerObject(inv.headers);
  const ct = h['content-type'] || inv.content_type || '';
  if (ct.startsWith('application/cloudevents+json')) {
    try { return JSON.parse(inv.body.toString('utf8')); } catch (e) { return null; }
  }
  const ce = {};
  for (const [k, v] of Object.entries(h)) if (k.startsWith('ce-')) ce[k.slice(3)] = v;
  if (!ce.id || !ce.source || !ce.type) return null;
  ce.datacontenttype = ct;
  ce.data = c.parsedBody(inv);
  return ce;
}

// An HTTP request to a background function → [data, context], or a string saying what was expected.
function backgroundFromHttp(inv) {
  const h = c.headerObject(inv.headers);
  if (h['ce-specversion']) {
    return [inv.body, { eventId: h['ce-eventid'] || h['ce-id'] || '', timestamp: h['ce-timestamp'] || h['ce-time'] || '',
      eventType: h['ce-eventtype'] || h['ce-type'] || '', resource: h['ce-resource'] || h['ce-source'] || '' }];
  }
  let body;
  try { body = JSON.parse(inv.body.toString('utf8')); } catch (e) { body = undefined; }
  if (!body || typeof body !== 'object' || Array.isArray(body)) {
    return 'this is a background function (data, context): send a legacy event {"data": …, "context": {"eventId", "timestamp", "eventType", "resource"}}';
  }
  const msg = body.message;
  if (!body.context && body.subscription && msg && 'data' in msg && msg.messageId) {  // a raw Pub/Sub push
    const topic = (/projects\/[^/?]+\/topics\/[^/?]+/.exec(inv.path || '') || [''])[0];
    return [{ '@type': 'type.googleapis.com/google.pubsub.v1.PubsubMessage', data: msg.data, attributes: msg.attributes || {} },
      { eventId: msg.messageId, timestamp: msg.publishTime || new Date().toISOString(), eventType: 'google.pubsub.topic.publish',
        resource: { service: 'pubsub.googleapis.com', type: 'type.googleapis.com/google.pubsub.v1.PubsubMessage', name: topic } }];
  }
  const ctx = body.context && typeof body.context === 'object' ? body.context
    : { eventId: body.eventId || '', timestamp: body.timestamp || '', eventType: body.eventType || '', resource: body.resource || '' };
  return [body.data === undefined ? '' : body.data, ctx];
}

async function background(handler, data, ctx) {
  const value = await c.callHandler(handler, null, [data, ctx]);
  const [headers, body] = c.encodeValue(value === undefined ? 'OK' : value);
  return { status: 200, headers, body };
}

module.exports = {
  convention,
  resolve(mod, name, meta) {
    if (registry.http.has(name) || registry.cloudevent.has(name)) return registry.http.get(name) || registry.cloudevent.get(name);
    return c.pick(mod, name, convention, meta);
  },
  async run(handler, inv, meta, io) {
    const sig = process.env.FUNCTION_SIGNATURE_TYPE;
    if (inv.kind === 'http' && (isCloudEventFn(handler) || sig === 'cloudevent')) {
      const ce = cloudEventFromHttp(inv);
      if (!ce) {
        return badRequest('this is a CloudEvent function: send a CloudEvent (ce-id, ce-source, ce-type, '
          + 'ce-specversion headers, or Content-Type: application/cloudevents+json)');
      }
      await c.callHandler(handler, null, [ce]);
      return OK();
    }
    if (inv.kind === 'http' && sig === 'event') {
      const ev = backgroundFromHttp(inv);
      return typeof ev === 'string' ? badRequest(ev) : background(handler, ev[0], ev[1]);
    }
    if (inv.kind !== 'http') {
      const payload = c.parseEventPayload(inv);
      if (isCloudEventFn(handler)) {
        await c.callHandler(handler, null, [payload]);
        return OK();
      }
      if (handler.length >= 2 || inv.kind === 'cloudevent') {
        // legacy background function: (data, context[, callback])
        const ce = inv.kind === 'cloudevent' && payload && typeof payload === 'object' ? payload : null;
        const data = ce ? ce.data : payload;
        const ctx = ce ? { eventId: ce.id, timestamp: ce.time, eventType: ce.type, resource: ce.source }
          : { eventId: inv.activation_id, timestamp: new Date().toISOString(), eventType: 'polyfn.invoke', resource: meta.name };
        return background(handler, data, ctx);
      }
    }
    return new Promise((resolve, reject) => {
      let ended = false;
      let stream = null;
      const res = response((status, headers, body) => {
        if (ended) return res;
        ended = true;
        if (stream && stream.streaming) return stream.finish(body);
        res.headersSent = true;
        const chunks = res._chunks ? [...res._chunks, body] : [body];
        resolve({ status, headers, body: Buffer.concat(chunks) });
        return res;
      });
      if (io) stream = streamWrites(res, io, meta, resolve);
      c.callHandler(handler, null, [request(inv), res]).then(() => {}, (err) => {
        if (stream && stream.streaming) stream.fail(err); // its head went already: the stream breaks off
        else reject(err);
      });
      // A handler that neither ends the response nor fails runs until the function's timeout (once it wrote,
      // the stream's idle timeout and maximum duration), as on GCF.
    });
  },
  fail(inv, err, meta) {
    const error = c.errorPayload(err, meta);
    return c.jsonError(500, error, [['x-google-status', 'crash']]);
  },
};
