'use strict';
// Alibaba Cloud Function Compute (Node.js): `exports.handler = function (event, context, callback)` with
// `event` a Buffer and `callback(err, data)`; `async (event, context)` works too. HTTP calls arrive as the
// FC 3.0 HTTP-trigger event (JSON, as a Buffer); a `{statusCode, headers, body, isBase64Encoded}` result
// is the HTTP response, any other value the body. Errors: {errorMessage, errorType, stackTrace}.
const c = require('./common');

const convention = 'Alibaba Cloud FC `exports.handler = function (event, context, callback)`';

function httpEvent(inv) {
  const { body, isBase64Encoded } = c.bodyString(inv);
  const h = c.headerObject(inv.headers, { lower: false });
  const now = new Date();
  return {
    version: 'v1', rawPath: inv.path || '/', body: body === null ? '' : body, isBase64Encoded, headers: h,
    queryParameters: c.queryObjects(inv.query).single,
    requestContext: {
      accountId: '000000000000', domainName: c.headerObject(inv.headers).host || 'localhost', domainPrefix: 'polyfn',
      http: { method: inv.method, path: inv.path || '/', protocol: 'HTTP/1.1', sourceIp: '127.0.0.1',
        userAgent: c.headerObject(inv.headers)['user-agent'] || '' },
      requestId: inv.activation_id, time: now.toISOString(), timeEpoch: String(now.getTime()),
    },
  };
}

function context(inv, meta) {
  const logger = {};
  for (const level of ['debug', 'info', 'log', 'warn', 'error']) {
    logger[level] = (...a) => process[level === 'warn' || level === 'error' ? 'stderr' : 'stdout']
      .write(`${new Date().toISOString()} ${inv.activation_id} [${level.toUpperCase()}] ${require('util').format(...a)}\n`);
  }
  return {
    requestId: inv.activation_id,
    credentials: { accessKeyId: process.env.ALIBABA_CLOUD_ACCESS_KEY_ID || '', accessKeySecret: process.env.ALIBABA_CLOUD_ACCESS_KEY_SECRET || '', securityToken: process.env.ALIBABA_CLOUD_SECURITY_TOKEN || '' },
    function: { name: meta.name, handler: meta.handler, memory: meta.memoryMb, timeout: Math.round(meta.timeout), initializer: '' },
    service: { name: 'polyfn', logProject: '', logStore: '', qualifier: 'LATEST', versionId: String(meta.revision) },
    region: process.env.FC_REGION || 'cn-hangzhou',
    accountId: '000000000000',
    tracing: { openTracingSpanContext: inv.trace_id || '', openTracingSpanBaggages: {} },
    logger,
    getRemainingTimeInMillis: () => c.remainingMs(inv),
  };
}

module.exports = {
  convention,
  resolve: (mod, name, meta) => c.pick(mod, name, convention, meta),
  async run(handler, inv, meta) {
    const event = inv.kind === 'http' ? Buffer.from(JSON.stringify(httpEvent(inv))) : Buffer.from(inv.body);
    const value = await c.callHandler(handler, null, [event, context(inv, meta)]);
    if (c.isProxyResult(value)) return c.proxyResponse(value);
    const [headers, body] = c.encodeValue(value === undefined ? '' : value);
    return { status: 200, headers, body };
  },
  fail: (inv, err, meta) => c.jsonError(inv.kind === 'http' ? 502 : 500, c.errorPayload(err, meta)),
};
