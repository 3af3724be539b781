'use strict';
// WeChat mini-program cloud functions: `exports.main = async (event, context)`. `event` is the caller's
// `data` (the JSON body of an HTTP call or the invoke payload) plus `userInfo {appId, openId}`; the return
// value is the JSON `result`. `require('wx-server-sdk')` resolves to polyfn's module (init, getWXContext,
// callFunction against this polyfn node). Who the caller is comes only from the node's verified identity
// (`inv.identity`: an app user's token, checked by polyfn.apps), never from request headers: `x-wx-openid`
// and its kind are dropped from every request before it reaches an instance.
const c = require('./common');
const sdk = require('../provided/wx-server-sdk');

const convention = 'WeChat cloud function `exports.main = async (event, context)`';

module.exports = {
  convention,
  resolve: (mod, name, meta) => c.pick(mod, name, convention, meta),
  async run(handler, inv, meta) {
    const id = inv.identity || {};
    let event = c.parseEventPayload(inv);
    if (Buffer.isBuffer(event)) event = { data: event.toString('utf8') };
    if (event === null || typeof event !== 'object' || Array.isArray(event)) event = { data: event };
    const wx = {
      OPENID: id.openid || '', APPID: id.appid || '', UNIONID: id.unionid || '',
      ENV: id.app || process.env.WX_ENV || 'polyfn', SOURCE: inv.identity ? 'wx_client' : (inv.kind === 'http' ? 'wx_http' : 'wx_unknown'),
      CLIENTIP: '', CLIENTIPV6: '',
      _token: id.token || '',
    };
    event.userInfo = { appId: wx.APPID, openId: wx.OPENID };
    const context = {
      callbackWaitsForEmptyEventLoop: false, memory_limit_in_mb: meta.memoryMb,
      time_limit_in_ms: Math.round(meta.timeout * 1000), request_id: inv.activation_id,
      function_name: meta.name, function_version: '$LATEST', namespace: wx.ENV, environ: '',
    };
    const value = await sdk._withContext(wx, () => c.callHandler(handler, null, [event, context]));
    const s = JSON.stringify(value === undefined ? null : value);
    return { status: 200, headers: [c.JSON_CT], body: Buffer.from(s === undefined ? 'null' : s) };
  },
  fail(inv, err, meta) {
    const error = c.errorPayload(err, meta);
    error.errCode = -504003;
    error.errMsg = `cloud.callFunction:fail -504003 functions execute fail | errMsg: ${error.errorMessage}`;
    return c.jsonError(500, error);
  },
};
