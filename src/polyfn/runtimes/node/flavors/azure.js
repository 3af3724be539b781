'use strict';
// Azure Functions, Node.js programming model v3: `module.exports = async function (context, req)`.
// The response is `context.res = {status, body, headers}` (or the returned value / `context.done(err,
// res)` for sync functions); `context.log(...)` with .error/.warn/.info/.verbose; `req` carries method,
// url, headers, query, params, body (parsed), rawBody. Use handler FILE.default for `module.exports = fn`.
// Model v4 (`app.http('name', { handler: async (request, context) => ({ status, body, jsonBody, headers }) })`
// from '@azure/functions', provided by polyfn) is resolved by the registered name: handler FILE.name.
const c = require('./common');
const v4 = require('../provided/azure-functions')._registry;
const v4Settings = require('../provided/azure-functions')._settings;

const convention = 'Azure Functions v3 `module.exports = async function (context, req)`';

function request(inv, meta) {
  const headers = c.headerObject(inv.headers);
  const host = headers.host || 'localhost';
  return {
    method: inv.method,
    url: `http://${host}/api/${meta.name}${inv.path && inv.path !== '/' ? inv.path : ''}${inv.query ? `?${inv.query}` : ''}`,
    originalUrl: `http://${host}/api/${meta.name}${inv.path && inv.path !== '/' ? inv.path : ''}${inv.query ? `?${inv.query}` : ''}`,
    headers, query: c.queryObjects(inv.query).single, params: {},
    body: inv.body.length ? c.parsedBody(inv) : undefined,
    rawBody: inv.body.length ? inv.body.toString('utf8') : undefined,
    bufferBody: inv.body,
    get(name) { return headers[String(name).toLowerCase()]; },
  };
}

function context(inv, meta, done) {
  const write = (stream) => (...args) => { process[stream].write(`${args.map((a) => (typeof a === 'string' ? a : require('util').inspect(a))).join(' ')}\n`); };
  const log = write('stdout');
  log.error = write('stderr');
  log.warn = write('stderr');
  log.info = write('stdout');
  log.verbose = write('stdout');
  const ctx = {
    invocationId: inv.activation_id,
    executionContext: { invocationId: inv.activation_id, functionName: meta.name, functionDirectory: meta.codeDir, retryContext: null },
    bindings: {},
    bindingData: { invocationId: inv.activation_id },
    bindingDefinitions: [],
    traceContext: { traceparent: inv.trace_id || null, tracestate: null, attributes: {} },
    log,
    res: undefined,
    done: (err, result) => done(err, result),
  };
  return ctx;
}

function toResponse(res) {
  if (res === undefined || res === null) return { status: 204, headers: [], body: Buffer.alloc(0) };
  if (typeof res !== 'object' || Buffer.isBuffer(res)) {
    const [headers, body] = c.encodeValue(res);
    return { status: 200, headers, body };
  }
  const status = Number(res.status || res.statusCode) || 200;
  let headers;
  let body;
  const b = res.body;
  if (b === undefined || b === null) [headers, body] = [[], Buffer.alloc(0)];
  else if (typeof b === 'string') [headers, body] = [[c.TEXT_CT], Buffer.from(b)];
  else [headers, body] = c.encodeValue(b);
  const extra = c.headerPairs(res.headers);
  if (res.cookies) for (const ck of res.cookies) extra.push(['set-cookie', `${ck.name}=${ck.value}`]);
  return { status, headers: c.mergeHeaders(headers, extra), body };
}

function v4Request(inv, meta) {
  const headers = new Headers();
  for (const [k, v] of inv.headers) { try { headers.append(k, v); } catch (e) { /* invalid header */ } }
  const host = headers.get('host') || 'localhost';
  const body = inv.body;
  return {
    method: inv.method, url: `http://${host}/api/${meta.name}${inv.path && inv.path !== '/' ? inv.path : ''}${inv.query ? `?${inv.query}` : ''}`,
    headers, query: new URLSearchParams(inv.query || ''), params: {}, user: null,
    body: body.length ? body : null, bodyUsed: false,
    async text() { return body.toString('utf8'); },
    async json() { return JSON.parse(body.toString('utf8')); },
    async arrayBuffer() { return body.buffer.slice(body.byteOffset, body.byteOffset + body.length); },
    async formData() { return new Response(body, { headers: { 'content-type': headers.get('content-type') || '' } }).formData(); },
  };
}

function v4Context(inv, meta, name) {
  const line = (stream) => (...a) => process[stream].write(`${require('util').format(...a)}\n`);
  return {
    invocationId: inv.activation_id, functionName: name, extraInputs: { get: () => undefined }, extraOutputs: { set: () => {} },
    log: line('stdout'), trace: line('stdout'), debug: line('stdout'), info: line('stdout'), warn: line('stderr'), error: line('stderr'),
    triggerMetadata: {}, retryContext: null, traceContext: { traceParent: inv.trace_id || null, traceState: null, attributes: {} },
    options: {},
  };
}

async function runV4(entry, inv, meta, io) {
  const ctx = v4Context(inv, meta, meta.exportName);
  if (entry.kind !== 'http' || inv.kind !== 'http') {
    const value = await c.callHandler(entry.handler, null, [c.parseEventPayload(inv), ctx]);
    const [headers, body] = c.encodeValue(value === undefined ? null : value);
    return { status: 200, headers, body };
  }
  const allowed = entry.options.methods;
  if (allowed && !allowed.map((m) => m.toUpperCase()).includes(inv.method)) {
    return { status: 405, headers: [c.TEXT_CT], body: Buffer.from(`method ${inv.method} not allowed`) };
  }
  const res = (await c.callHandler(entry.handler, null, [v4Request(inv, meta), ctx])) || {};
  const status = Number(res.status) || 200;
  let headers;
  let body;
  if (c.isStream(res.body)) { // a Node Readable, a web ReadableStream or an async iterable of chunks
    const extra = v4Headers(res);
    // `app.setup({ enableHttpStream: true })`: each piece goes out as the stream yields it (docs/streaming.md)
    if (v4Settings.enableHttpStream && io) return c.streamBody(res.body, status, c.mergeHeaders([c.BINARY_CT], extra), io, meta);
    const parts = [];
    for await (const piece of res.body) parts.push(Buffer.from(piece));
    return { status, headers: c.mergeHeaders([c.BINARY_CT], extra), body: Buffer.concat(parts) }; // (Azure buffers it)
  }
  if (res.jsonBody !== undefined) [headers, body] = [[c.JSON_CT], Buffer.from(JSON.stringify(res.jsonBody))];
  else if (res.body === undefined || res.body === null) [headers, body] = [[], Buffer.alloc(0)];
  else if (typeof res.body === 'string') [headers, body] = [[c.TEXT_CT], Buffer.from(res.body)];
  else [headers, body] = c.encodeValue(res.body);
  return { status, headers: c.mergeHeaders(headers, v4Headers(res)), body };
}

function v4Headers(res) {
  let extra = [];
  if (res.headers && typeof res.headers.forEach === 'function' && !(res.headers instanceof Object && res.headers.constructor === Object)) {
    res.headers.forEach((v, k) => extra.push([k, v]));
  } else extra = c.headerPairs(res.headers);
  for (const ck of res.cookies || []) extra.push(['set-cookie', `${ck.name}=${ck.value}`]);
  return extra;
}

module.exports = {
  convention,
  resolve(mod, name, meta) {
    const entry = v4.get(name);
    if (entry && typeof entry.handler === 'function') {
      const fn = entry.handler;
      fn.__polyfnAzureV4 = entry;
      return fn;
    }
    return c.pick(mod, name, convention, meta);
  },
  async run(handler, inv, meta, io) {
    if (handler.__polyfnAzureV4) return runV4(handler.__polyfnAzureV4, inv, meta, io);
    let legacy = () => {};
    const ctx = context(inv, meta, (e, v) => legacy(e, v));
    let input;
    if (inv.kind === 'http') {
      input = request(inv, meta);
      ctx.req = input;
      ctx.bindings.req = input;
    } else {
      input = c.parseEventPayload(inv);
      ctx.bindings.trigger = input;
    }
    // Sync (non-async) functions end with context.done(); async ones with their promise.
    const value = await c.callHandler(handler, null, [ctx, input], {
      register: (done) => { legacy = done; }, syncReturnCounts: true,
      alwaysCallback: handler.constructor.name !== 'AsyncFunction' && handler.length < 3,
    });
    const res = ctx.res !== undefined ? ctx.res : (ctx.bindings.res !== undefined ? ctx.bindings.res : value);
    if (inv.kind !== 'http' && !(res && typeof res === 'object' && ('body' in res || 'status' in res))) {
      const [headers, body] = c.encodeValue(res === undefined ? null : res);
      return { status: 200, headers, body };
    }
    return toResponse(res);
  },
  fail(inv, err, meta) {
    return c.jsonError(500, c.errorPayload(err, meta));
  },
};
