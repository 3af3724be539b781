'use strict';
// polyfn's own convention for Node.js: `exports.handler = async (event, context)`.
// HTTP calls get a request object {method, path, query, headers, body (Buffer), text(), json()}; events
// the parsed JSON payload. Return a `{statusCode, headers, body}` object or any value (string → text,
// Buffer → binary, else JSON); `undefined` → 204 for HTTP calls. A handler that returns a stream (an async
// generator, a Node Readable, a web ReadableStream, any async iterable of strings/Buffers), or a
// `{statusCode, headers, body: stream}` object, streams: each piece goes out as it is yielded (docs/streaming.md).
const c = require('./common');

const convention = "native `exports.handler = async (event, context)`";

function request(inv) {
  return {
    method: inv.method, path: inv.path || '/', query: c.queryObjects(inv.query).single, queryString: inv.query,
    headers: c.headerObject(inv.headers), body: inv.body,
    text() { return inv.body.toString('utf8'); },
    json() { return inv.body.length ? JSON.parse(inv.body.toString('utf8')) : null; },
  };
}

function context(inv, meta) {
  return {
    activationId: inv.activation_id, functionName: meta.name, functionVersion: String(meta.revision),
    memoryLimitInMB: meta.memoryMb, deadline: inv.deadline, traceId: inv.trace_id,
    getRemainingTimeInMillis: () => c.remainingMs(inv),
  };
}

module.exports = {
  convention,
  resolve: (mod, name, meta) => c.pick(mod, name, convention, meta),
  async run(handler, inv, meta, io) {
    const http = inv.kind === 'http';
    const value = await c.callHandler(handler, null, [http ? request(inv) : c.parseEventPayload(inv), context(inv, meta)]);
    const streamed = io && c.streamedValue(value);
    if (streamed) return c.streamBody(streamed[2], streamed[0], streamed[1], io, meta);
    if (http) {
      if (c.isProxyResult(value)) return c.proxyResponse(value);
      if (value === undefined || value === null) return { status: 204, headers: [], body: Buffer.alloc(0) };
    } else if (!Buffer.isBuffer(value) && typeof value !== 'string') {
      return { status: 200, headers: [c.JSON_CT], body: Buffer.from(JSON.stringify(value === undefined ? null : value)) };
    }
    const [headers, body] = c.encodeValue(value);
    return { status: 200, headers, body };
  },
  fail: (inv, err, meta) => c.jsonError(500, c.errorPayload(err, meta)),
};
