'use strict';
// What every Node.js flavor shares: loading the user's module, calling handlers in their async or
// callback form, HTTP request/response helpers, API-gateway events and error payloads.
//
// A flavor module exports:
//   convention            human description of the vendor's shape (named in errors)
//   resolve(mod, name, meta) -> handler function (throws InitError naming the convention)
//   run(handler, inv, meta)  -> Promise<{status, headers: [[k, v]], body: Buffer, error?}>
//   fail(inv, err, meta)     -> {status, headers, body, error}   (a handler threw or rejected)
//   globalName (optional)    a top-level function name to pick up from a script that exports nothing

const fs = require('fs');
const path = require('path');
const Module = require('module');
const { pathToFileURL } = require('url');

class InitError extends Error {
  constructor(type, message, stack) {
    super(message);
    this.type = type;
    this.stackLines = stack || [];
  }
  payload() {
    return { errorType: this.type, errorMessage: this.message, stackTrace: this.stackLines };
  }
}

const RUNTIME_DIR = path.dirname(__dirname);

function userStack(err, codeDir) {
  if (!err || !err.stack) return [];
  const prefix = (codeDir || process.cwd()) + path.sep;
  return String(err.stack).split('\n').slice(1)
    .map((l) => l.trim())
    .filter((l) => l.startsWith('at ') && !l.includes(RUNTIME_DIR) && !l.includes('node:internal'))
    .map((l) => l.split(prefix).join(''));
}

function findFile(codeDir, file) {
  const base = path.resolve(codeDir, file);
  if (!(base + path.sep).startsWith(path.resolve(codeDir) + path.sep)) return null;
  for (const cand of [base + '.js', base + '.cjs', base + '.mjs', base, path.join(base, 'index.js')]) {
    try {
      if (fs.statSync(cand).isFile()) return cand;
    } catch (e) { /* next */ }
  }
  return null;
}

// Load `file` (relative to the code directory, without extension). `globalName`: for scripts written as
// OpenWhisk actions (`function main(params) {...}` with no export), pick up that top-level function.
async function loadUserModule(codeDir, file, globalName) {
  const filename = findFile(codeDir, file);
  if (!filename) {
    throw new InitError('Runtime.ImportModuleError',
      `Cannot find module '${file}': expected ${file}.js (or .cjs, .mjs) in the function's code`);
  }
  try {
    if (filename.endsWith('.mjs')) return await import(pathToFileURL(filename).href);
    if (globalName) {
      const m = new Module(filename, module);
      m.filename = filename;
      m.paths = Module._nodeModulePaths(path.dirname(filename));
      const src = fs.readFileSync(filename, 'utf8');
      const tail = `\n;if (typeof ${globalName} === 'function' && module.exports.${globalName} === undefined && ` +
        `typeof module.exports !== 'function') { module.exports.${globalName} = ${globalName}; }\n`;
      m._compile(src + tail, filename);
      require.cache[filename] = m;
      m.loaded = true;
      return m.exports;
    }
    try {
      return require(filename);
    } catch (e) {
      if (e && e.code === 'ERR_REQUIRE_ESM') return await import(pathToFileURL(filename).href);
      throw e;
    }
  } catch (e) {
    if (e instanceof InitError) throw e;
    const rel = path.relative(codeDir, filename);
    if (e instanceof SyntaxError) {
      const where = e.stack ? String(e.stack).split('\n')[0].split(codeDir + path.sep).join('') : rel;
      throw new InitError('Runtime.UserCodeSyntaxError', `${where}: SyntaxError: ${e.message}`);
    }
    if (e && e.code === 'MODULE_NOT_FOUND') {
      throw new InitError('Runtime.ImportModuleError', `Error: ${e.message.split('\n')[0]} (required by ${rel})`,
        userStack(e, codeDir));
    }
    throw new InitError('Runtime.ImportModuleError',
      `${rel} raised while loading: ${e && e.name ? e.name : 'Error'}: ${e && e.message ? e.message : e}`,
      userStack(e, codeDir));
  }
}

// `exports.NAME`, or the module itself when it is a function (`module.exports = fn`, NAME "default").
function pick(mod, name, convention, meta) {
  let fn = mod == null ? undefined : mod[name];
  if (fn === undefined && mod && mod.default !== undefined && (name === 'default' || typeof mod.default === 'object')) {
    fn = name === 'default' ? mod.default : mod.default[name];
  }
  if (fn === undefined && typeof mod === 'function' && name === 'default') fn = mod;
  if (typeof fn !== 'function') {
    const have = mod ? Object.keys(mod).filter((k) => typeof mod[k] === 'function') : [];
    const shown = typeof mod === 'function' ? 'module.exports is itself a function (use handler FILE.default)'
      : `it exports ${have.length ? have.join(', ') : 'no functions'}`;
    throw new InitError('Runtime.HandlerNotFound',
      `${meta.file}.${name} is undefined or not a function: the ${convention} convention expects it (${shown})`);
  }
  return fn;
}

// Parameter names of a function, from its source (for conventions that differ only by naming).
function paramNames(fn) {
  const src = Function.prototype.toString.call(fn).replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
  const m = src.match(/^(?:async\s+)?(?:function\b[^(]*)?\(([^)]*)\)/) || src.match(/^(?:async\s+)?([\w$]+)\s*=>/);
  return m ? m[1].split(',').map((p) => p.trim().split(/[\s=]/)[0]).filter(Boolean) : [];
}

function isThenable(v) {
  return v != null && typeof v.then === 'function';
}

// Call `fn(...args)`. Its result is whichever comes first: the callback (when `fn` declares one more
// parameter than `args`, or `alwaysCallback`), or the promise it returns; a plain return value counts
// when there is no callback. A handler that never calls back never settles: the server's deadline ends it.
function callHandler(fn, thisArg, args, opts = {}) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (err, value) => {
      if (settled) return;
      settled = true;
      if (err !== null && err !== undefined) reject(err);
      else resolve(value);
    };
    const withCallback = opts.alwaysCallback || fn.length > args.length;
    if (opts.register) opts.register(done);
    let ret;
    try {
      ret = withCallback ? fn.apply(thisArg, [...args, done]) : fn.apply(thisArg, args);
    } catch (e) {
      done(e === undefined || e === null ? new Error(String(e)) : e);
      return;
    }
    if (isThenable(ret)) {
      ret.then((v) => done(null, v), (e) => done(e === undefined || e === null ? new Error('promise rejected') : e));
    } else if (!withCallback) {
      done(null, ret);
    } else if (opts.syncReturnCounts && ret !== undefined) {
      done(null, ret);
    }
  });
}

// --- HTTP helpers -------------------------------------------------------------------------------------

function headerObject(pairs, { lower = true, join = ', ' } = {}) {
  const out = {};
  for (const [k0, v] of pairs) {
    const k = lower ? k0.toLowerCase() : k0;
    out[k] = Object.prototype.hasOwnProperty.call(out, k) ? `${out[k]}${join}${v}` : v;
  }
  return out;
}

function multiHeaders(pairs) {
  const out = {};
  for (const [k, v] of pairs) (out[k] = out[k] || []).push(v);
  return out;
}

function queryObjects(qs) {
  const single = {};
  const multi = {};
  for (const [k, v] of new URLSearchParams(qs || '')) {
    single[k] = v;
    (multi[k] = multi[k] || []).push(v);
  }
  return { single, multi };
}

function contentType(inv) {
  return (inv.content_type || '').toLowerCase();
}

function isTextType(ct) {
  return !ct || ct.startsWith('text/') || ct.includes('json') || ct.includes('xml') ||
    ct.includes('javascript') || ct.includes('x-www-form-urlencoded') || ct.includes('charset=');
}

// A body as a vendor's string field: text as is, binary as base64 with a flag.
function bodyString(inv) {
  if (!inv.body.length) return { body: null, isBase64Encoded: false };
  if (isTextType(contentType(inv))) {
    const s = inv.body.toString('utf8');
    if (Buffer.from(s, 'utf8').equals(inv.body)) return { body: s, isBase64Encoded: false };
  }
  return { body: inv.body.toString('base64'), isBase64Encoded: true };
}

// Express-style parsed body: JSON → value, urlencoded → object, text → string, else the Buffer.
function parsedBody(inv) {
  const ct = contentType(inv);
  if (!inv.body.length) return ct.includes('json') ? {} : '';
  if (ct.includes('json')) {
    try { return JSON.parse(inv.body.toString('utf8')); } catch (e) { return inv.body.toString('utf8'); }
  }
  if (ct.includes('x-www-form-urlencoded')) return queryObjects(inv.body.toString('utf8')).single;
  if (ct.startsWith('text/')) return inv.body.toString('utf8');
  return inv.body;
}

// An event payload as vendors pass it: parsed JSON when it is JSON, else the raw Buffer.
function parseEventPayload(inv) {
  if (!inv.body.length) return {};
  const ct = contentType(inv);
  if (!ct || ct.includes('json')) {
    try { return JSON.parse(inv.body.toString('utf8')); } catch (e) { /* raw */ }
  }
  return inv.body;
}

const JSON_CT = ['content-type', 'application/json'];
const TEXT_CT = ['content-type', 'text/plain; charset=utf-8'];
const BINARY_CT = ['content-type', 'application/octet-stream'];

// A JavaScript value as an HTTP body: Buffer as is, string as text, anything else as JSON.
function encodeValue(value) {
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return [[BINARY_CT], Buffer.from(value)];
  if (typeof value === 'string') return [[TEXT_CT], Buffer.from(value, 'utf8')];
  const s = JSON.stringify(value === undefined ? null : value);
  return [[JSON_CT], Buffer.from(s === undefined ? 'null' : s, 'utf8')];
}

function mergeHeaders(base, extra) {
  if (!extra.length) return base;
  const keys = new Set(extra.map(([k]) => k.toLowerCase()));
  return [...base.filter(([k]) => !keys.has(k.toLowerCase())), ...extra];
}

function headerPairs(obj) {
  const out = [];
  if (!obj || typeof obj !== 'object') return out;
  for (const [k, v] of Object.entries(obj)) {
    if (v === undefined || v === null) continue;
    if (Array.isArray(v)) for (const one of v) out.push([k, String(one)]);
    else out.push([k, String(v)]);
  }
  return out;
}

// `{statusCode, headers, multiValueHeaders, body, isBase64Encoded, cookies}` (API Gateway, FC, SCF) → HTTP.
function proxyResponse(value) {
  const status = Number(value.statusCode) || 200;
  let body = value.body;
  let headers;
  let raw;
  if (body === undefined || body === null) [headers, raw] = [[TEXT_CT], Buffer.alloc(0)];
  else if (value.isBase64Encoded && typeof body === 'string') [headers, raw] = [[BINARY_CT], Buffer.from(body, 'base64')];
  else if (typeof body === 'string' && !value.headers?.['content-type'] && !value.headers?.['Content-Type']) {
    [headers, raw] = [[JSON_CT], Buffer.from(body, 'utf8')]; // API Gateway's default content type
    if (!/^\s*[[{"]/.test(body) && !/^\s*(-?\d|true|false|null)/.test(body)) headers = [TEXT_CT];
  } else [headers, raw] = encodeValue(body);
  let extra = [...headerPairs(value.headers), ...headerPairs(value.multiValueHeaders)];
  if (Array.isArray(value.cookies)) extra = [...extra, ...value.cookies.map((c) => ['set-cookie', String(c)])];
  return { status, headers: mergeHeaders(headers, extra), body: raw };
}

function isProxyResult(value) {
  return value !== null && typeof value === 'object' && !Buffer.isBuffer(value) && 'statusCode' in value;
}

// --- streamed bodies (docs/streaming.md) -------------------------------------------------------------

// A body that streams: a Node Readable, a web ReadableStream, an async generator or any async iterable.
function isStream(b) {
  return b != null && typeof b === 'object' && !Buffer.isBuffer(b) && !ArrayBuffer.isView(b)
    && (typeof b[Symbol.asyncIterator] === 'function' || typeof b.getReader === 'function');
}

function chunkBuffer(piece) {
  if (Buffer.isBuffer(piece)) return piece;
  if (typeof piece === 'string' || ArrayBuffer.isView(piece)) return Buffer.from(piece);
  throw new TypeError(`a streamed chunk must be a string, Buffer or Uint8Array, not ${piece === null ? 'null' : typeof piece}`);
}

// Send `stream`'s pieces as it yields them: `io.head` once, then `io.chunk` per piece (awaiting the socket:
// back-pressure). The server's Cancel (the client went) destroys a Readable, cancels a ReadableStream and
// returns an async generator at its next yield (its `finally` runs). A stream that throws ends it with the error.
async function streamBody(stream, status, headers, io, meta) {
  let cancelled = false;
  io.onCancel(() => {
    cancelled = true;
    if (typeof stream.destroy === 'function') stream.destroy();
    else if (typeof stream.cancel === 'function') stream.cancel().catch(() => {});
  });
  io.head(status, headers);
  try {
    for await (const piece of stream) {
      if (cancelled) break;
      const buf = chunkBuffer(piece);
      if (buf.length) await new Promise((resolve) => io.chunk(buf, resolve));
    }
  } catch (err) {
    if (!cancelled) return { streamed: true, status, error: errorPayload(err, meta) };
  }
  return { streamed: true, status };
}

// A handler's value that is a streamed response, as [status, headers, stream], else null: a stream itself
// (200, application/octet-stream) or a `{statusCode, headers, cookies, body: stream}` result.
function streamedValue(value) {
  if (isStream(value)) return [200, [BINARY_CT], value];
  if (isProxyResult(value) && isStream(value.body)) {
    let extra = headerPairs(value.headers);
    if (Array.isArray(value.cookies)) extra = [...extra, ...value.cookies.map((ck) => ['set-cookie', String(ck)])];
    return [Number(value.statusCode) || 200, mergeHeaders([BINARY_CT], extra), value.body];
  }
  return null;
}

// --- vendor-neutral events ----------------------------------------------------------------------------

function requestTimes() {
  const now = new Date();
  return { epoch: now.getTime(), iso: now.toISOString() };
}

function sourceIp(pairs) {
  const h = headerObject(pairs);
  return (h['x-forwarded-for'] || '127.0.0.1').split(',')[0].trim();
}

// API Gateway REST (payload 1.0) proxy event.
function apiGatewayV1(inv, meta) {
  const { single, multi } = queryObjects(inv.query);
  const { body, isBase64Encoded } = bodyString(inv);
  const t = requestTimes();
  const h = headerObject(inv.headers, { lower: false, join: ',' });
  return {
    resource: '/{proxy+}',
    path: inv.path || '/',
    httpMethod: inv.method,
    headers: h,
    multiValueHeaders: multiHeaders(inv.headers),
    queryStringParameters: Object.keys(single).length ? single : null,
    multiValueQueryStringParameters: Object.keys(multi).length ? multi : null,
    pathParameters: inv.path && inv.path !== '/' ? { proxy: inv.path.slice(1) } : null,
    stageVariables: null,
    requestContext: {
      accountId: process.env.POLYFN_ACCOUNT_ID || '000000000000', resourceId: 'polyfn', stage: '$default', requestId: inv.activation_id,
      identity: { sourceIp: sourceIp(inv.headers), userAgent: headerObject(inv.headers)['user-agent'] || '' },
      resourcePath: '/{proxy+}', httpMethod: inv.method, apiId: 'polyfn', path: `/fn/${meta.name}${inv.path || '/'}`,
      protocol: 'HTTP/1.1', domainName: headerObject(inv.headers).host || 'localhost', requestTime: t.iso,
      requestTimeEpoch: t.epoch,
      ...(inv.identity ? { authorizer: { claims: inv.identity.claims || {}, principalId: inv.identity.uid } } : {}),
    },
    body,
    isBase64Encoded,
  };
}

// HTTP API / Function URL (payload 2.0) event.
function apiGatewayV2(inv, meta) {
  const { single } = queryObjects(inv.query);
  const { body, isBase64Encoded } = bodyString(inv);
  const h = headerObject(inv.headers, { join: ',' });
  const cookies = h.cookie ? h.cookie.split(/;\s*/) : undefined;
  delete h.cookie;
  const t = requestTimes();
  const ev = {
    version: '2.0', routeKey: '$default', rawPath: inv.path || '/', rawQueryString: inv.query || '',
    headers: h, queryStringParameters: Object.keys(single).length ? single : undefined,
    requestContext: {
      accountId: process.env.POLYFN_ACCOUNT_ID || '000000000000', apiId: 'polyfn', domainName: h.host || 'localhost', domainPrefix: 'polyfn',
      http: { method: inv.method, path: inv.path || '/', protocol: 'HTTP/1.1', sourceIp: sourceIp(inv.headers), userAgent: h['user-agent'] || '' },
      requestId: inv.activation_id, routeKey: '$default', stage: '$default', time: t.iso, timeEpoch: t.epoch,
      ...(inv.identity ? { authorizer: { jwt: { claims: inv.identity.claims || {}, scopes: null } } } : {}),
    },
    isBase64Encoded,
  };
  if (cookies) ev.cookies = cookies;
  if (body !== null) ev.body = body;
  void meta;
  return ev;
}

function errorPayload(err, meta, traceKey = 'stackTrace') {
  let type = 'Error';
  let message;
  if (err instanceof Error) {
    type = err.name || err.constructor?.name || 'Error';
    message = err.message;
  } else if (typeof err === 'string') {
    message = err;
  } else {
    try { message = JSON.stringify(err); } catch (e) { message = String(err); }
  }
  return { errorType: type, errorMessage: message + storageFull(err, message), [traceKey]: userStack(err, meta && meta.codeDir) };
}

// A note naming the setting when the error is "no space left on device": the only writable place is /tmp, sized
// by the function's ephemeral storage (as the Python runtime says, flavors/base.py).
function storageFull(err, message) {
  if (!(err && err.code === 'ENOSPC') && !/no space left on device/i.test(String(message))) return '';
  let size = 'its size';
  try {
    const st = require('fs').statfsSync('/tmp');
    size = `${Math.floor((st.blocks * st.bsize) / (1024 * 1024))} MB`;
  } catch (e) { /* (Node < 18.15: no statfs) */ }
  return ` [polyfn: /tmp is full — the function's ephemeral storage is ${size}; raise it with ` +
    '`polyfn deploy --ephemeral-storage MB` (up to 10240; /tmp is memory-backed: raise --memory too)]';
}

function jsonError(status, error, extraHeaders = []) {
  return { status, headers: [JSON_CT, ...extraHeaders], body: Buffer.from(JSON.stringify(error)), error };
}

function remainingMs(inv) {
  return Math.max(0, Math.round(inv.deadline * 1000 - Date.now()));
}

module.exports = {
  InitError, loadUserModule, pick, callHandler, paramNames, isThenable, userStack,
  headerObject, multiHeaders, queryObjects, contentType, bodyString, parsedBody, parseEventPayload,
  encodeValue, mergeHeaders, headerPairs, proxyResponse, isProxyResult, apiGatewayV1, apiGatewayV2,
  errorPayload, jsonError, remainingMs, JSON_CT, TEXT_CT, BINARY_CT, isStream, streamBody, streamedValue,
};
