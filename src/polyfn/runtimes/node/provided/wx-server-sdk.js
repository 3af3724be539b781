'use strict';
// polyfn's 'wx-server-sdk': what WeChat cloud functions use of the server SDK, working against polyfn.
//   init({env})        remembers the environment (DYNAMIC_CURRENT_ENV = the caller's)
//   getWXContext()     {OPENID, APPID, UNIONID, ENV, SOURCE} of the current invocation
//   callFunction({name, data}) invokes another polyfn function over HTTP and resolves to
//                      {result, errMsg: 'cloud.callFunction:ok', requestID}; called for a signed-in user,
//                      it calls as that user (the app's call endpoint with the user's own token), so the
//                      other function's getWXContext() names the same OPENID
//   database(options)  the cloud database (wx-database.js): polyfn's collections, with the function's key
// Other cloud APIs (storage, openapi) are not provided: calling them throws saying so.
const http = require('http');
const { AsyncLocalStorage } = require('async_hooks');
const wxDatabase = require('./wx-database');

const current = new AsyncLocalStorage();
const DYNAMIC_CURRENT_ENV = Symbol.for('DYNAMIC_CURRENT_ENV');
let config = { env: DYNAMIC_CURRENT_ENV };

function init(options) {
  config = { ...config, ...(options || {}) };
}

function getWXContext() {
  const wx = current.getStore() || { OPENID: '', APPID: '', UNIONID: '', ENV: 'polyfn', SOURCE: 'wx_unknown' };
  const env = config.env === DYNAMIC_CURRENT_ENV || config.env === undefined ? wx.ENV : (config.env.functions || config.env);
  const { _token, ...shown } = wx;
  return { ...shown, ENV: env };
}

function callFunction({ name, data } = {}) {
  const base = process.env.POLYFN_API_URL;
  const wx = current.getStore() || {};
  return new Promise((resolve, reject) => {
    if (!name) return reject(new Error('cloud.callFunction:fail parameter.name should be a string'));
    if (!base) return reject(new Error('cloud.callFunction:fail polyfn did not provide POLYFN_API_URL'));
    const payload = Buffer.from(JSON.stringify(data === undefined ? {} : data));
    const asUser = Boolean(wx._token && wx.ENV);
    const url = new URL(asUser ? `/app/${encodeURIComponent(wx.ENV)}/call/${encodeURIComponent(name)}`
      : `/fn/${encodeURIComponent(name)}`, base);
    const headers = { 'content-type': 'application/json', 'content-length': payload.length };
    if (asUser) headers.authorization = `Bearer ${wx._token}`;
    const req = http.request(url, { method: 'POST', headers }, (res) => {
      const chunks = [];
      res.on('data', (ch) => chunks.push(ch));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let result = text;
        try { result = text ? JSON.parse(text) : null; } catch (e) { /* text result */ }
        const requestID = res.headers['x-polyfn-activation-id'] || '';
        if (res.statusCode >= 400) {
          const msg = result && result.error && result.error.message ? result.error.message : (result && result.errorMessage) || text;
          const err = new Error(`cloud.callFunction:fail ${res.statusCode} ${msg}`);
          err.errCode = res.statusCode;
          err.errMsg = err.message;
          err.requestID = requestID;
          return reject(err);
        }
        resolve({ result, errMsg: 'cloud.callFunction:ok', requestID });
      });
    });
    req.on('error', (e) => reject(new Error(`cloud.callFunction:fail ${e.message}`)));
    req.end(payload);
    return undefined;
  });
}

function unsupported(what) {
  return () => { throw new Error(`wx-server-sdk: ${what} is not provided by polyfn (supported: init, getWXContext, callFunction, database)`); };
}

module.exports = {
  DYNAMIC_CURRENT_ENV, init, getWXContext, callFunction,
  database: wxDatabase.database, uploadFile: unsupported('uploadFile()'), downloadFile: unsupported('downloadFile()'),
  getTempFileURL: unsupported('getTempFileURL()'), deleteFile: unsupported('deleteFile()'), openapi: new Proxy({}, { get: (_, k) => unsupported(`openapi.${String(k)}`) }),
  _withContext: (wx, fn) => current.run(wx, fn),
};
