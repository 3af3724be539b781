'use strict';
// Azure Functions, Node.js programming model v3: `module.exports = async function (context, req)`.
// The response is `context.res = {status, body, headers}` (or the returned value / `context.done(err,
// res)` for sync functions); `context.log(...)` with .error/.warn/.info/.verbose; `req` carries method,
// url, headers, query, params, body (parsed), rawBody. Use handler FILE.default for `module.exports = fn`.
const c = require('./common');

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

module.exports = {
  convention,
  resolve: (mod, name, meta) => c.pick(mod, name, convention, meta),
  async run(handler, inv, meta) {
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
