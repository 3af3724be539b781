'use strict';
// Apache OpenWhisk (Node.js): `function main(params)` (exported or not, as OpenWhisk loads actions),
// returning an object or a Promise. Web-action calls merge query and JSON body fields into params and add
// __ow_method, __ow_headers, __ow_path (and __ow_body for non-JSON bodies, base64 when binary); a
// `{statusCode, headers, body}` result is the HTTP response. `{error: ...}` marks an application error.
// The activation context is in __OW_* environment variables.
const c = require('./common');

const convention = 'OpenWhisk `function main(params)`';

function params(inv) {
  if (inv.kind !== 'http') {
    const p = c.parseEventPayload(inv);
    return p && typeof p === 'object' && !Buffer.isBuffer(p) ? p : { payload: Buffer.isBuffer(p) ? p.toString('utf8') : p };
  }
  const out = { ...c.queryObjects(inv.query).single };
  const ct = c.contentType(inv);
  if (inv.body.length) {
    let merged = false;
    if (ct.includes('json') || !ct) {
      try {
        const v = JSON.parse(inv.body.toString('utf8'));
        if (v && typeof v === 'object' && !Array.isArray(v)) { Object.assign(out, v); merged = true; }
      } catch (e) { /* not JSON */ }
    } else if (ct.includes('x-www-form-urlencoded')) {
      Object.assign(out, c.queryObjects(inv.body.toString('utf8')).single);
      merged = true;
    }
    if (!merged) out.__ow_body = c.bodyString(inv).body;
  }
  out.__ow_method = inv.method.toLowerCase();
  out.__ow_headers = c.headerObject(inv.headers);
  out.__ow_path = inv.path && inv.path !== '/' ? inv.path : '';
  return out;
}

function webResponse(value) {
  const headers = c.headerPairs(value.headers);
  const ct = (headers.find(([k]) => k.toLowerCase() === 'content-type') || [])[1] || '';
  let body = value.body;
  let raw;
  let base;
  if (body === undefined || body === null) [base, raw] = [[], Buffer.alloc(0)];
  else if (typeof body === 'string') {
    const binary = ct && !/^text\/|json|xml|javascript/.test(ct);
    [base, raw] = [[['content-type', 'text/html; charset=utf-8']], binary ? Buffer.from(body, 'base64') : Buffer.from(body)];
  } else [base, raw] = c.encodeValue(body);
  const status = Number(value.statusCode) || (raw.length ? 200 : 204);
  return { status, headers: c.mergeHeaders(base, headers), body: raw };
}

module.exports = {
  convention,
  globalName: 'main',
  resolve: (mod, name, meta) => c.pick(mod, name, convention, meta),
  async run(handler, inv, meta) {
    Object.assign(process.env, {
      __OW_ACTIVATION_ID: inv.activation_id, __OW_ACTION_NAME: `/polyfn/${meta.name}`, __OW_NAMESPACE: 'polyfn',
      __OW_DEADLINE: String(Math.round(inv.deadline * 1000)), __OW_API_HOST: meta.apiUrl, __OW_TRANSACTION_ID: inv.trace_id || inv.activation_id,
    });
    const value = await c.callHandler(handler, null, [params(inv)]);
    if (value && typeof value === 'object' && !Buffer.isBuffer(value) && 'error' in value) {
      const error = { error: value.error };
      return { status: 400, headers: [c.JSON_CT], body: Buffer.from(JSON.stringify(error)), error };
    }
    if (inv.kind === 'http' && value && typeof value === 'object' && ('statusCode' in value || 'body' in value || 'headers' in value)) {
      return webResponse(value);
    }
    const s = JSON.stringify(value === undefined ? {} : value);
    return { status: 200, headers: [c.JSON_CT], body: Buffer.from(s === undefined ? '{}' : s) };
  },
  fail(inv, err) {
    const error = { error: err instanceof Error ? `An error has occurred: ${err.name}: ${err.message}` : err };
    return { status: 502, headers: [c.JSON_CT], body: Buffer.from(JSON.stringify(error)), error: { errorType: err && err.name || 'Error', errorMessage: error.error, stackTrace: c.userStack(err) } };
  },
};
