'use strict';
// polyfn's 'wx-server-sdk' (it stands for the real package even when package.json lists it): what WeChat
// cloud functions use of the server SDK, working against polyfn.
//   init(config) / updateConfig(config)   remember the environment (DYNAMIC_CURRENT_ENV = the caller's)
//   getWXContext()     {OPENID, APPID, UNIONID, ENV, SOURCE} of the current invocation
//   callFunction({name, data}) invokes another polyfn function, `data` as its event (any flavor), and resolves
//                      to {result, errMsg: 'cloud.callFunction:ok', requestID}; called for a signed-in user,
//                      it calls as that user (the app's call endpoint with the user's own token), so the
//                      other function's getWXContext() names the same OPENID; otherwise with the function's key
//   database(options)  the cloud database (wx-database.js): polyfn's collections, with the function's key
//   uploadFile, downloadFile, getTempFileURL, deleteFile   files in polyfn's object store (wx-storage.js)
//   logger()           log/info/warn/error as one JSON line each
//   new Cloud(config) / createNewInstance(config)   another instance with its own config
// Everything else the real SDK has (openapi.*, cloudPay.*, getOpenData, callOpenAPI, getVoIPSign, …), and any
// other name, throws "… is not provided by polyfn" when called: never a TypeError.
const http = require('http');
const { AsyncLocalStorage } = require('async_hooks');
const wxDatabase = require('./wx-database');
const wxStorage = require('./wx-storage');

const current = new AsyncLocalStorage();
const DYNAMIC_CURRENT_ENV = Symbol.for('DYNAMIC_CURRENT_ENV');
let config = { env: DYNAMIC_CURRENT_ENV };

function init(options) {
  config = { ...config, ...(options || {}) };
}

function envOf(cfg) {
  const wx = current.getStore() || {};
  const env = cfg.env === DYNAMIC_CURRENT_ENV || cfg.env === undefined ? wx.ENV : cfg.env;
  return (env && typeof env === 'object' ? env.storage || env.default || env.functions : env) || 'polyfn';
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
    // `data` is the called function's event whatever its flavor: the app's call endpoint (as the user) or the
    // invoke API with this function's own key
    const url = new URL(asUser ? `/app/${encodeURIComponent(wx.ENV)}/call/${encodeURIComponent(name)}`
      : `/v1/functions/${encodeURIComponent(name)}/invoke`, base);
    const headers = { 'content-type': 'application/json', 'content-length': payload.length };
    if (asUser) headers.authorization = `Bearer ${wx._token}`;
    else if (process.env.AWS_ACCESS_KEY_ID) headers.authorization = `Bearer ${process.env.AWS_ACCESS_KEY_ID}:${process.env.AWS_SECRET_ACCESS_KEY}`;
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

// Something the real SDK (or a newer one) has and polyfn does not: calling it — or anything under it, as in
// `cloud.openapi.subscribeMessage.send(...)` — throws saying so.
function notProvided(path) {
  const fail = () => {
    const err = new Error(`wx-server-sdk: ${path} is not provided by polyfn (provided: init, updateConfig, getWXContext, `
      + 'callFunction, database, uploadFile, downloadFile, getTempFileURL, deleteFile, logger)');
    err.errCode = -1;
    err.errMsg = err.message;
    throw err;
  };
  return new Proxy(fail, {
    get: (target, key) => (typeof key === 'symbol' || key === 'then' ? undefined : notProvided(`${path}.${key}`)),
    apply: fail,
    construct: fail,
  });
}

// `{success, fail, complete}` callbacks, as the SDK's APIs take them; else the promise.
function api(fn) {
  return (options, ...rest) => {
    const p = Promise.resolve().then(() => fn(options || {}, ...rest));
    const { success, fail, complete } = options || {};
    if (typeof success !== 'function' && typeof fail !== 'function' && typeof complete !== 'function') return p;
    p.then((r) => { if (success) success(r); if (complete) complete(r); },
      (e) => { if (fail) fail(e); if (complete) complete(e); });
    return undefined;
  };
}

function logger() {
  const line = (level) => (object) => {
    const wx = current.getStore() || {};
    process.stdout.write(`${JSON.stringify({ level, ...(object || {}), ...(wx.OPENID ? { openid: wx.OPENID } : {}) })}\n`);
  };
  return { log: line('log'), info: line('info'), warn: line('warn'), error: line('error') };
}

function makeCloud(own) {
  const instance = {
    version: 'polyfn',
    DYNAMIC_CURRENT_ENV,
    init: own ? (options) => Object.assign(own, options || {}) : init,
    updateConfig: own ? (options) => Object.assign(own, options || {}) : init,
    getWXContext,
    callFunction,
    database: wxDatabase.database,
    uploadFile: api((o) => wxStorage.uploadFile(envOf(own || config), o)),
    downloadFile: api((o) => wxStorage.downloadFile(o)),
    getTempFileURL: api((o) => wxStorage.getTempFileURL(o)),
    deleteFile: api((o) => wxStorage.deleteFile(o)),
    logger,
    createNewInstance: (options) => makeCloud({ env: DYNAMIC_CURRENT_ENV, ...(options || {}) }),
    _withContext: (wx, fn) => current.run(wx, fn),
  };
  instance.Cloud = function Cloud(options) { return makeCloud({ env: DYNAMIC_CURRENT_ENV, ...(options || {}) }); };
  const quiet = new Set(['then', 'default', '__esModule', 'toJSON', 'inspect', 'constructor', 'prototype']);
  return new Proxy(instance, {
    get(target, key) {
      if (typeof key === 'symbol' || key in target) return target[key];
      return quiet.has(key) ? undefined : notProvided(key);
    },
  });
}

module.exports = makeCloud();
