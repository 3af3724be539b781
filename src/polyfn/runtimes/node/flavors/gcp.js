'use strict';
// Google Cloud Functions (Node.js): HTTP functions `exports.helloWorld = (req, res) => res.send(...)` with
// Express-like req/res, functions registered with `functions.http('name', fn)` /
// `functions.cloudEvent('name', fn)` from '@google-cloud/functions-framework' (provided by polyfn), and
// legacy background functions `(data, context[, callback])`. An uncaught error answers 500 with
// `X-Google-Status: crash`, as the Functions Framework does.
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

// res: what an Express response offers that HTTP functions use. Resolves `finished` once ended.
function response(finish) {
  const res = {
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
    end(data) { return finish(res.statusCode, res._headers, data == null ? Buffer.alloc(0) : Buffer.from(data)); },
    write(chunk) { res._chunks = res._chunks || []; res._chunks.push(Buffer.from(chunk)); return true; },
    sendStatus(code) { res.statusCode = code; return res.send(STATUS_TEXT[code] || String(code)); },
    redirect(a, b) { const [code, url] = typeof a === 'number' ? [a, b] : [302, a]; res.statusCode = code; res.set('location', url); return res.end(); },
  };
  return res;
}

function isCloudEventFn(handler) {
  return registry.kind.get(handler) === 'cloudevent';
}

module.exports = {
  convention,
  resolve(mod, name, meta) {
    if (registry.http.has(name) || registry.cloudevent.has(name)) return registry.http.get(name) || registry.cloudevent.get(name);
    return c.pick(mod, name, convention, meta);
  },
  async run(handler, inv, meta) {
    if (inv.kind !== 'http') {
      const payload = c.parseEventPayload(inv);
      if (isCloudEventFn(handler)) {
        await c.callHandler(handler, null, [payload]);
        return { status: 200, headers: [c.TEXT_CT], body: Buffer.from('OK') };
      }
      if (handler.length >= 2 || inv.kind === 'cloudevent') {
        // legacy background function: (data, context[, callback])
        const ce = inv.kind === 'cloudevent' && payload && typeof payload === 'object' ? payload : null;
        const data = ce ? ce.data : payload;
        const ctx = ce ? { eventId: ce.id, timestamp: ce.time, eventType: ce.type, resource: ce.source }
          : { eventId: inv.activation_id, timestamp: new Date().toISOString(), eventType: 'polyfn.invoke', resource: meta.name };
        const value = await c.callHandler(handler, null, [data, ctx]);
        const [headers, body] = c.encodeValue(value === undefined ? 'OK' : value);
        return { status: 200, headers, body };
      }
    }
    return new Promise((resolve, reject) => {
      let ended = false;
      const res = response((status, headers, body) => {
        if (ended) return res;
        ended = true;
        res.headersSent = true;
        const chunks = res._chunks ? [...res._chunks, body] : [body];
        resolve({ status, headers, body: Buffer.concat(chunks) });
        return res;
      });
      c.callHandler(handler, null, [request(inv), res]).then(() => {}, reject);
      // A handler that neither ends the response nor fails runs until the function's timeout, as on GCF.
    });
  },
  fail(inv, err, meta) {
    const error = c.errorPayload(err, meta);
    return c.jsonError(500, error, [['x-google-status', 'crash']]);
  },
};
