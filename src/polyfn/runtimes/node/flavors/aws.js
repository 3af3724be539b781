'use strict';
// AWS Lambda (Node.js): `exports.handler = async (event, context)` or `(event, context, callback)`.
// HTTP calls arrive as API Gateway proxy events (payload 1.0; set env AWS_LAMBDA_PAYLOAD_VERSION=2.0 for
// HTTP API / Function URL events); `{statusCode, headers, body, isBase64Encoded}` results become HTTP
// responses. Errors use Lambda's Node shape: {errorType, errorMessage, trace}.
const { Writable, finished } = require('stream');
const c = require('./common');

// --- response streaming: Lambda's `awslambda` global (as its Node.js runtime defines it) ----------------------
// `awslambda.streamifyResponse(async (event, responseStream, context) => ...)` marks a handler that writes its
// response to `responseStream` (a Writable: write, end, pipeline, setContentType);
// `awslambda.HttpResponseStream.from(responseStream, {statusCode, headers, cookies})` sets the HTTP status and
// headers, which go out with the first chunk. Without them: 200 and application/octet-stream.
const HANDLER_STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const STREAM_RESPONSE = 'response';

class ResponseStream extends Writable {
  constructor(io) {
    super({ highWaterMark: 64 * 1024 });
    this._io = io;
    this._headSent = false;
    this._contentType = 'application/octet-stream';
    this._prelude = null;
  }

  setContentType(type) { this._contentType = String(type); }

  _sendHead() {
    if (this._headSent) return;
    this._headSent = true;
    const p = this._prelude || {};
    const headers = [['content-type', this._contentType]];
    for (const [k, v] of Object.entries(p.headers || {})) {
      if (k.toLowerCase() === 'content-type') headers[0] = [k, String(v)];
      else headers.push([k, String(v)]);
    }
    for (const cookie of p.cookies || []) headers.push(['set-cookie', String(cookie)]);
    this._io.head(p.statusCode || 200, headers);
  }

  _write(chunk, encoding, done) {
    this._sendHead();
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk, encoding);
    if (!buf.length) { done(); return; }
    this._io.chunk(buf, done);
  }

  _final(done) {
    this._sendHead();
    done();
  }
}

class HttpResponseStream {
  static from(underlyingStream, prelude) {
    if (underlyingStream instanceof ResponseStream) underlyingStream._prelude = prelude || {};
    return underlyingStream;
  }
}

globalThis.awslambda = globalThis.awslambda || {
  streamifyResponse(handler, options) {
    handler[HANDLER_STREAMING] = STREAM_RESPONSE;
    if (options && options.highWaterMark) handler.highWaterMark = options.highWaterMark;
    return handler;
  },
  HttpResponseStream,
};

async function runStreaming(handler, inv, meta, io) {
  const stream = new ResponseStream(io);
  const closed = new Promise((resolve) => finished(stream, () => resolve()));
  // the client went: the stream closes (its 'close' event; writes fail; `pipeline` rejects)
  io.onCancel(() => stream.destroy());
  let error = null;
  try {
    await c.callHandler(handler, null, [event(inv, meta), stream, context(inv, meta, () => {})]);
  } catch (err) {
    if (!stream._headSent) throw err; // nothing streamed yet: an ordinary error response
    error = err;
  }
  if (!stream.destroyed && !stream.writableEnded) stream.end(); // (a handler that returned without end())
  await closed;
  if (error !== null) return { streamed: true, status: 200, error: c.errorPayload(error, meta, 'trace') };
  return { streamed: true, status: 200 };
}

const convention = 'AWS Lambda `exports.handler = async (event, context)` (or `(event, context, callback)`)';

function context(inv, meta, done) {
  const region = process.env.AWS_REGION || 'us-east-1';
  const ctx = {
    awsRequestId: inv.activation_id,
    functionName: meta.name,
    functionVersion: '$LATEST',
    // the account id of the function's namespace (an account on AWS; polyfn/instances/specs.py sets it)
    invokedFunctionArn: `arn:aws:lambda:${region}:${process.env.POLYFN_ACCOUNT_ID || '000000000000'}:function:${meta.name}`,
    memoryLimitInMB: String(meta.memoryMb),
    logGroupName: `/aws/lambda/${meta.name}`,
    logStreamName: `polyfn/${process.env.POLYFN_INSTANCE_ID || process.pid}`,
    // a signed-in app user (polyfn.apps), as a Cognito identity: id = the user, pool = the app
    identity: inv.identity ? { cognitoIdentityId: inv.identity.uid, cognitoIdentityPoolId: inv.identity.app } : undefined,
    clientContext: undefined,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => c.remainingMs(inv),
    // legacy context methods
    succeed: (v) => done(null, v),
    fail: (e) => done(e || new Error('context.fail called')),
    done: (e, v) => done(e, v),
  };
  return ctx;
}

function event(inv, meta) {
  if (inv.kind === 'http') {
    return process.env.AWS_LAMBDA_PAYLOAD_VERSION === '2.0' ? c.apiGatewayV2(inv, meta) : c.apiGatewayV1(inv, meta);
  }
  return c.parseEventPayload(inv);
}

module.exports = {
  convention,
  resolve: (mod, name, meta) => c.pick(mod, name, convention, meta),
  async run(handler, inv, meta, io) {
    if (handler[HANDLER_STREAMING] === STREAM_RESPONSE && io) return runStreaming(handler, inv, meta, io);
    let legacy = () => {};
    const ctx = context(inv, meta, (e, v) => legacy(e, v));
    const value = await c.callHandler(handler, null, [event(inv, meta), ctx], {
      alwaysCallback: true, syncReturnCounts: true, register: (done) => { legacy = done; },
    });
    if (inv.kind === 'http') {
      if (c.isProxyResult(value)) return c.proxyResponse(value);
      // Like an HTTP API (payload 2.0): any other value is the JSON body with 200.
      if (typeof value === 'string') return { status: 200, headers: [c.JSON_CT], body: Buffer.from(value) };
    }
    const s = JSON.stringify(value === undefined ? null : value);
    return { status: 200, headers: [c.JSON_CT], body: Buffer.from(s === undefined ? 'null' : s) };
  },
  fail: (inv, err, meta) => c.jsonError(inv.kind === 'http' ? 502 : 500, c.errorPayload(err, meta, 'trace')),
};
