'use strict';
// OpenFaaS Node.js templates (node18/node20, of-watchdog): `module.exports = async (event, context) =>
// context.status(200).succeed(result)`; event = {body, headers, method, query, path}. The classic `node`
// template `module.exports = (context, callback)` (context = the body text) works too when the function
// takes a callback. Use handler FILE.default for `module.exports = fn`.
const c = require('./common');

const convention = 'OpenFaaS `module.exports = async (event, context)` (node templates)';

function fcontext(finish) {
  let status = 200;
  let headers = {};
  const ctx = {
    status(code) { if (code === undefined) return status; status = code; return ctx; },
    headers(h) { if (h === undefined) return headers; headers = h; return ctx; },
    succeed(value) { finish(null, { status, headers, value }); return ctx; },
    fail(err) { finish(err); return ctx; },
    cbCalled: 0,
  };
  return ctx;
}

module.exports = {
  convention,
  resolve: (mod, name, meta) => c.pick(mod, name, convention, meta),
  async run(handler, inv, meta) {
    const body = inv.kind === 'http' ? c.parsedBody(inv) : inv.body.toString('utf8');
    if (c.paramNames(handler)[1] === 'callback' || c.paramNames(handler)[1] === 'cb') {
      // classic template: (context = body text, callback)
      const value = await c.callHandler(handler, null, [inv.body.toString('utf8')], { alwaysCallback: true });
      const [headers, raw] = c.encodeValue(value === undefined ? '' : value);
      return { status: 200, headers, body: raw };
    }
    const event = {
      body, headers: c.headerObject(inv.headers), method: inv.method,
      query: c.queryObjects(inv.query).single, path: inv.path || '/',
    };
    let finish = () => {};
    const ctx = fcontext((e, v) => finish(e, v));
    const outcome = await c.callHandler(handler, null, [event, ctx], { register: (done) => { finish = done; } });
    const r = outcome && typeof outcome === 'object' && 'status' in outcome && 'value' in outcome ? outcome : { status: 200, headers: {}, value: outcome };
    const [headers, raw] = c.encodeValue(r.value === undefined ? '' : r.value);
    return { status: Number(r.status) || 200, headers: c.mergeHeaders(headers, c.headerPairs(r.headers)), body: raw };
  },
  fail(inv, err) {
    const message = err instanceof Error ? err.toString() : (typeof err === 'string' ? err : JSON.stringify(err));
    return { status: 500, headers: [c.TEXT_CT], body: Buffer.from(message), error: c.errorPayload(err) };
  },
};
