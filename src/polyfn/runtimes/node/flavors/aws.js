'use strict';
// AWS Lambda (Node.js): `exports.handler = async (event, context)` or `(event, context, callback)`.
// HTTP calls arrive as API Gateway proxy events (payload 1.0; set env AWS_LAMBDA_PAYLOAD_VERSION=2.0 for
// HTTP API / Function URL events); `{statusCode, headers, body, isBase64Encoded}` results become HTTP
// responses. Errors use Lambda's Node shape: {errorType, errorMessage, trace}.
const c = require('./common');

const convention = 'AWS Lambda `exports.handler = async (event, context)` (or `(event, context, callback)`)';

function context(inv, meta, done) {
  const region = process.env.AWS_REGION || 'us-east-1';
  const ctx = {
    awsRequestId: inv.activation_id,
    functionName: meta.name,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${region}:000000000000:function:${meta.name}`,
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
  async run(handler, inv, meta) {
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
