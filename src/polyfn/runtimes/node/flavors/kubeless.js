'use strict';
// Kubeless (Node.js): `module.exports = { f: (event, context) => ... }`, returning a value or a Promise.
// event = {data, 'event-id', 'event-type', 'event-time', 'event-namespace', extensions: {request}};
// `data` is parsed JSON when the request says JSON, else a string.
const c = require('./common');

const convention = 'Kubeless `module.exports = { FUNC: (event, context) => ... }`';

module.exports = {
  convention,
  resolve: (mod, name, meta) => c.pick(mod, name, convention, meta),
  async run(handler, inv, meta) {
    const ct = c.contentType(inv);
    let data = inv.body.toString('utf8');
    if (ct.includes('json') || (inv.kind !== 'http' && !ct)) {
      try { data = inv.body.length ? JSON.parse(data) : ''; } catch (e) { /* keep text */ }
    }
    const event = {
      data,
      'event-id': inv.activation_id,
      'event-type': ct || 'application/x-www-form-urlencoded',
      'event-time': new Date().toISOString(),
      'event-namespace': 'polyfn',
      extensions: {
        request: { method: inv.method, url: (inv.path || '/') + (inv.query ? `?${inv.query}` : ''), headers: c.headerObject(inv.headers) },
      },
    };
    const context = { 'function-name': meta.name, timeout: String(meta.timeout), runtime: `nodejs${process.versions.node.split('.')[0]}`, 'memory-limit': `${meta.memoryMb}Mi` };
    const value = await c.callHandler(handler, null, [event, context]);
    const [headers, body] = c.encodeValue(value === undefined ? '' : value);
    return { status: 200, headers, body };
  },
  fail: (inv, err, meta) => ({ ...c.jsonError(500, c.errorPayload(err, meta)) }),
};
