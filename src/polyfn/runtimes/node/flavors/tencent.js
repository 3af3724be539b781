'use strict';
// Tencent Cloud SCF (Node.js): `exports.main_handler = async (event, context)` (also `exports.main`,
// `module.exports.hello`, and the callback form). HTTP calls arrive as API Gateway events; a
// `{statusCode, headers, body, isBase64Encoded}` result is the HTTP response, any other value JSON.
const c = require('./common');

const convention = 'Tencent SCF `exports.main_handler = async (event, context)`';

function apiGatewayEvent(inv, meta) {
  const headers = c.headerObject(inv.headers);
  const { single } = c.queryObjects(inv.query);
  const body = inv.body.length ? inv.body.toString(c.bodyString(inv).isBase64Encoded ? 'base64' : 'utf8') : '';
  return {
    requestContext: {
      serviceId: 'service-polyfn', path: `/fn/${meta.name}`, httpMethod: inv.method, requestId: inv.activation_id,
      identity: {}, sourceIp: (headers['x-forwarded-for'] || '127.0.0.1').split(',')[0], stage: 'release',
    },
    headers, body, isBase64Encoded: c.bodyString(inv).isBase64Encoded,
    pathParameters: {}, queryStringParameters: single, headerParameters: {}, stageVariables: { stage: 'release' },
    path: inv.path || '/', queryString: single, httpMethod: inv.method,
  };
}

function context(inv, meta) {
  return {
    callbackWaitsForEmptyEventLoop: true,
    memory_limit_in_mb: meta.memoryMb,
    time_limit_in_ms: Math.round(meta.timeout * 1000),
    request_id: inv.activation_id,
    environment: JSON.stringify(process.env.SCF_ENVIRONMENT ? JSON.parse(process.env.SCF_ENVIRONMENT) : {}),
    environ: Object.entries(meta.env || {}).map(([k, v]) => `${k}=${v}`).join(';'),
    function_version: '$LATEST',
    function_name: meta.name,
    namespace: 'default',
    tencentcloud_region: process.env.TENCENTCLOUD_REGION || 'ap-guangzhou',
    tencentcloud_appid: process.env.TENCENTCLOUD_APPID || '',
    tencentcloud_uin: process.env.TENCENTCLOUD_UIN || '',
    getRemainingTimeInMillis: () => c.remainingMs(inv),
  };
}

module.exports = {
  convention,
  resolve: (mod, name, meta) => c.pick(mod, name, convention, meta),
  async run(handler, inv, meta) {
    const event = inv.kind === 'http' ? apiGatewayEvent(inv, meta) : c.parseEventPayload(inv);
    const value = await c.callHandler(handler, null, [event, context(inv, meta)]);
    if (inv.kind === 'http' && c.isProxyResult(value)) return c.proxyResponse(value);
    if (Buffer.isBuffer(value)) return { status: 200, headers: [c.BINARY_CT], body: value };
    const s = JSON.stringify(value === undefined ? null : value);
    return { status: 200, headers: [c.JSON_CT], body: Buffer.from(s === undefined ? 'null' : s) };
  },
  fail: (inv, err, meta) => c.jsonError(inv.kind === 'http' ? 502 : 500, c.errorPayload(err, meta)),
};
