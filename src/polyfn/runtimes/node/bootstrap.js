'use strict';
// The Node.js instance: speaks polyfn's instance protocol (4-byte big-endian length + msgpack frames,
// see src/polyfn/protocol/__init__.py) on the socket inherited as fd $POLYFN_FD, serves one revision.
//
// Phases as in the Python instance: init (environment, load the module, find the handler through the
// flavor) reports Ready or, once, a typed InitError and exits; then every Invoke frame is answered by a
// Result frame. Output written during an invocation (console.log, process.stdout.write) is captured per
// invocation through AsyncLocalStorage, so concurrent invocations never mix their logs.
//
// Usage (by the server's launcher): node bootstrap.js '<instance spec as JSON>'
//   or, pre-started ("blank"): node bootstrap.js — the first frame on the socket is then the spec (JSON),
//   so a cold start skips Node's own start-up.

const fs = require('fs');
const net = require('net');
const path = require('path');
const Module = require('module');
const { AsyncLocalStorage } = require('async_hooks');
const msgpack = require('./msgpack');
const { InitError, loadUserModule } = require('./flavors/common');

let T0 = process.hrtime.bigint();
const BLANK = process.argv.length < 3;
let spec = BLANK ? null : JSON.parse(process.argv[2]);
const MAX_FRAME = 64 * 1024 * 1024;

// --- log capture ------------------------------------------------------------------------------------

// Lines of an invocation that runs a while are sent ahead of its result (a `logs` frame, as the Python
// instance does), so what it printed before a timeout, a crash or an OOM kill is kept: after STREAM_AFTER_MS
// (or half the time left before the deadline, if less), complete lines go out as they are printed (the write reaches the
// socket at once, even if the handler then blocks the event loop), at most one frame per STREAM_EVERY_MS; a
// timer sends what waits between two prints.
const STREAM_AFTER_MS = 1000;
const STREAM_EVERY_MS = 100;

class LogBuffer {
  constructor(lineMax, linesMax, inv = 0) {
    this.lines = [];
    this.partial = { stdout: '', stderr: '' };
    this.lineMax = lineMax;
    this.linesMax = linesMax;
    this.dropped = 0;
    this.inv = inv; // the invocation whose lines these are (0: init, or output outside any invocation)
    this.streamAt = Infinity; // Date.now() from which complete lines are streamed
    this.timer = null;
  }
  stream(afterMs) {
    this.streamAt = Date.now() + afterMs;
    this.arm(afterMs);
  }
  arm(ms) {
    if (this.timer === null) {
      this.timer = setTimeout(() => { this.timer = null; this.flush(); }, ms);
      this.timer.unref();
    }
  }
  flush() {
    if (!this.inv || !this.lines.length || this.streamAt === Infinity) return;
    const lines = this.lines;
    this.lines = [];
    this.streamAt = Date.now() + STREAM_EVERY_MS;
    send(['logs', this.inv, lines]);
  }
  done() {
    this.streamAt = Infinity;
    if (this.timer !== null) { clearTimeout(this.timer); this.timer = null; }
  }
  add(stream, text) {
    const parts = (this.partial[stream] + text).split('\n');
    this.partial[stream] = parts.pop();
    for (const line of parts) this.line(stream, line);
    if (this.partial[stream].length > this.lineMax) {
      this.line(stream, this.partial[stream]);
      this.partial[stream] = '';
    }
  }
  line(stream, line) {
    if (this.lines.length >= this.linesMax) { this.dropped++; return; }
    if (line.length > this.lineMax) {
      line = `${line.slice(0, this.lineMax)}… [truncated ${line.length - this.lineMax} chars]`;
    }
    this.lines.push([Date.now() / 1000, stream, line]);
    if (this.streamAt !== Infinity) {
      const wait = this.streamAt - Date.now();
      if (wait <= 0) this.flush();
      else this.arm(wait);
    }
  }
  drain() {
    for (const stream of ['stdout', 'stderr']) {
      if (this.partial[stream]) this.line(stream, this.partial[stream]);
      this.partial[stream] = '';
    }
    if (this.dropped) {
      this.lines.push([Date.now() / 1000, 'stderr', `[polyfn: ${this.dropped} more lines dropped]`]);
      this.dropped = 0;
    }
    const out = this.lines;
    this.lines = [];
    return out;
  }
}

let lineMax = 16384;
let linesMax = 1000;
const als = new AsyncLocalStorage();
const initBuf = new LogBuffer(lineMax, linesMax);
let fallback = initBuf; // output outside any invocation (timers, init) goes to the next result

for (const stream of ['stdout', 'stderr']) {
  process[stream].write = function write(chunk, encoding, cb) {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    (als.getStore() || fallback).add(stream, text);
    if (typeof encoding === 'function') encoding();
    else if (typeof cb === 'function') cb();
    return true;
  };
}

// --- frames ---------------------------------------------------------------------------------------

const sock = new net.Socket({ fd: Number(process.env.POLYFN_FD || 3), readable: true, writable: true });
delete process.env.POLYFN_FD;

function send(msg) {
  const body = msgpack.encode(msg);
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(body.length, 0);
  sock.write(Buffer.concat([head, body]));
}

// A streamed response's chunk: ['chunk', id, bin] encoded by hand around `buf`, which is written as it is
// (no copy into a frame); `done` runs once the socket took it (back-pressure: after 'drain' when its buffer is full).
const CHUNK_TAG = Buffer.from([0xa5, 0x63, 0x68, 0x75, 0x6e, 0x6b]); // fixstr "chunk"
function sendChunk(id, buf, done) {
  const idBytes = msgpack.encode(id);
  const n = buf.length;
  const binHead = n < 256 ? Buffer.from([0xc4, n]) : n < 65536 ? Buffer.from([0xc5, n >> 8, n & 255])
    : Buffer.from([0xc6, (n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(1 + CHUNK_TAG.length + idBytes.length + binHead.length + n, 0);
  sock.cork();
  sock.write(Buffer.concat([head, Buffer.from([0x93]), CHUNK_TAG, idBytes, binHead]));
  const ok = sock.write(buf);
  sock.uncork();
  if (ok) done(); else sock.once('drain', done);
}

// What a flavor that streams is given per invocation (docs/streaming.md): `head(status, headers)` once, then
// `chunk(buffer, done)` per piece; `onCancel(fn)`: fn runs if the server cancels the invocation (its client went).
const cancels = new Map();
function streamIO(inv) {
  return {
    head(status, headers) {
      send(['head', inv.id, status | 0 || 200, (headers || []).map(([k, v]) => [String(k), String(v)])]);
    },
    chunk(buf, done) { sendChunk(inv.id, buf, done); },
    onCancel(fn) { cancels.set(inv.id, fn); },
  };
}

function sendInitError(error, exit = true) {
  send(['init_error', error, initBuf.drain()]);
  if (exit) sock.end(() => process.exit(0));
}

// Invoke fields in protocol order (array_like struct, tag first).
const INVOKE_FIELDS = ['id', 'activation_id', 'kind', 'deadline', 'method', 'path', 'query', 'headers', 'body',
  'content_type', 'trace_id', 'identity'];
const INVOKE_DEFAULTS = { method: '', path: '', query: '', headers: [], body: Buffer.alloc(0), content_type: '', trace_id: '', identity: null };

function toInvoke(arr) {
  if (!Array.isArray(arr) || arr[0] !== 'invoke') throw new Error('not an invoke frame');
  const inv = {};
  INVOKE_FIELDS.forEach((f, i) => { inv[f] = arr[i + 1] === undefined ? INVOKE_DEFAULTS[f] : arr[i + 1]; });
  if (!Buffer.isBuffer(inv.body)) inv.body = Buffer.from(inv.body || '');
  return inv;
}

// --- init -------------------------------------------------------------------------------------------

function prepareEnvironment() {
  process.chdir(spec.code_dir);
  Object.assign(process.env, {
    POLYFN_FUNCTION_NAME: spec.function,
    POLYFN_FUNCTION_REVISION: String(spec.revision),
    POLYFN_INSTANCE_ID: spec.instance_id,
    POLYFN_MEMORY_MB: String(spec.memory_mb),
    POLYFN_TIMEOUT: String(spec.timeout),
  }, spec.env || {});
  // Modules polyfn provides to user code (vendor SDKs whose behaviour is the platform's).
  const provided = {
    'wx-server-sdk': path.join(__dirname, 'provided', 'wx-server-sdk.js'),
    '@google-cloud/functions-framework': path.join(__dirname, 'provided', 'functions-framework.js'),
    '@azure/functions': path.join(__dirname, 'provided', 'azure-functions.js'),
  };
  // Firebase's functions SDK: the v2 API at the root (as in firebase-functions 6+), v1 under /v1
  const fb = (f) => path.join(__dirname, 'provided', 'firebase-functions', f);
  Object.assign(provided, {
    'firebase-functions': fb('index.js'), 'firebase-functions/v2': fb('index.js'),
    'firebase-functions/https': fb('https.js'), 'firebase-functions/v2/https': fb('https.js'),
    'firebase-functions/v1': fb('v1.js'), 'firebase-functions/v1/https': fb('v1-https.js'),
    'firebase-functions/logger': fb('logger.js'),
  });
  const resolve = Module._resolveFilename;
  Module._resolveFilename = function (request, ...rest) {
    if (Object.prototype.hasOwnProperty.call(provided, request)) return provided[request];
    return resolve.call(this, request, ...rest);
  };
  // package.json dependencies installed at deploy time live outside the (read-only) code directory; then
  // the AWS SDK v3 polyfn provides to every function as Lambda's Node runtime does (one shared read-only
  // copy, `make node-sdk`): a function's own copy comes first and wins.
  const sdk = path.join(__dirname, 'provided', 'aws-sdk', 'node_modules');
  const paths = [spec.deps_dir ? path.join(spec.deps_dir, 'node_modules') : '',
    fs.existsSync(sdk) ? sdk : '', process.env.NODE_PATH].filter(Boolean);
  if (paths.length) {
    process.env.NODE_PATH = paths.join(':');
    Module._initPaths();
  }
}

// The sandbox's last step (see src/polyfn/sandbox/spawn.py): the spawn agent sets up this function's
// mounts (own code read-only, data dir hidden, private /tmp) and network relay, then writes one JSON line
// on $POLYFN_GATE_FD with the uid/gid to become. Until then only this bootstrap has run, as root under
// no_new_privs + seccomp; no user code runs before the switch (glibc applies it to every thread).
let sandboxInfo = '';
function passGate() {
  const fdText = process.env.POLYFN_GATE_FD;
  if (fdText === undefined) return;
  delete process.env.POLYFN_GATE_FD;
  const fd = Number(fdText);
  const buf = Buffer.alloc(65536);
  let text = '';
  while (!text.includes('\n')) {
    let n;
    try {
      n = fs.readSync(fd, buf, 0, buf.length, null);
    } catch (e) {
      if (e.code === 'EAGAIN') continue;
      throw e;
    }
    if (n === 0) break;
    text += buf.toString('utf8', 0, n);
  }
  fs.closeSync(fd);
  let gate;
  try {
    gate = JSON.parse(text);
  } catch (e) {
    gate = { ok: false, error: 'sandbox: the spawn agent ended before setting up the sandbox' };
  }
  if (!gate.ok) throw new InitError('Runtime.SandboxError', gate.error);
  if (gate.uid) {
    process.setgroups([]);
    process.setgid(gate.gid);
    process.setuid(gate.uid);
    if (process.getuid() !== gate.uid || process.getegid() !== gate.gid) {
      throw new InitError('Runtime.SandboxError', `sandbox: could not switch to uid ${gate.uid}`);
    }
  }
  sandboxInfo = gate.sandbox || '';
}

async function init() {
  passGate();
  prepareEnvironment();
  let flavor;
  try {
    flavor = require(`./flavors/${spec.flavor}`);
  } catch (e) {
    throw new InitError('Runtime.UnknownFlavor', `unknown Node.js flavor '${spec.flavor}'`);
  }
  const handlerStr = String(spec.handler || '');
  const dot = handlerStr.lastIndexOf('.');
  const file = dot > 0 ? handlerStr.slice(0, dot) : handlerStr;
  const exportName = dot > 0 ? handlerStr.slice(dot + 1) : 'handler';
  const meta = {
    name: spec.function, revision: spec.revision, handler: handlerStr, memoryMb: spec.memory_mb,
    timeout: spec.timeout, codeDir: spec.code_dir, apiUrl: spec.api_url || '', file, exportName,
  };
  const mod = await loadUserModule(spec.code_dir, file, flavor.globalName || null);
  const handler = flavor.resolve(mod, exportName, meta);
  return { flavor, handler, meta };
}

// --- serving --------------------------------------------------------------------------------------

function oneLine(err) {
  return err && err.stack ? String(err.stack).split('\n')[0] : String(err);
}

async function runOne(state, inv) {
  const buf = new LogBuffer(lineMax, linesMax, inv.id);
  // (half the time left before the deadline, if less: a cold start may have used part of the timeout)
  buf.stream(Math.max(0, Math.min(STREAM_AFTER_MS, (Number(inv.deadline) * 1000 - Date.now()) / 2)) || 0);
  const t0 = performance.now();
  let out;
  try {
    out = await als.run(buf, () => state.flavor.run(state.handler, inv, state.meta, streamIO(inv)));
  } catch (err) {
    try {
      out = state.flavor.fail(inv, err, state.meta);
    } catch (e2) {
      out = { status: 500, headers: [], body: Buffer.from(oneLine(e2)), error: { errorType: 'Runtime.MarshalError', errorMessage: oneLine(e2) } };
    }
  }
  cancels.delete(inv.id);
  buf.done();
  if (out.streamed) { // its head and chunks went already: the Result ends the stream (an error: it broke off)
    const logs = buf.drain();
    if (initBuf.lines.length || fallback.lines.length) logs.unshift(...fallback.drain());
    return ['result', inv.id, out.status | 0 || 200, [], Buffer.alloc(0), out.error || null, logs, performance.now() - t0];
  }
  let headers = out.headers || [];
  headers = headers.map(([k, v]) => [String(k), String(v)]);
  const body = Buffer.isBuffer(out.body) ? out.body : Buffer.from(out.body == null ? '' : String(out.body));
  const logs = buf.drain();
  if (initBuf.lines.length || fallback.lines.length) logs.unshift(...fallback.drain());
  return ['result', inv.id, out.status | 0 || 200, headers, body, out.error || null, logs, performance.now() - t0];
}

let state = null; // set once init succeeded
const queued = []; // invocations that arrived before init finished

function onFrame(frame) {
  if (spec === null) { // a blank's first frame: the instance spec
    spec = JSON.parse(Buffer.from(frame).toString('utf8'));
    T0 = process.hrtime.bigint();
    start();
    return;
  }
  let inv;
  try {
    const arr = msgpack.decode(frame);
    if (Array.isArray(arr) && arr[0] === 'cancel') { // the server stops a stream nobody reads any more
      const cancel = cancels.get(arr[1]);
      if (cancel) { cancels.delete(arr[1]); cancel(); }
      return;
    }
    inv = toInvoke(arr);
  } catch (e) {
    process.exit(1); // the server never sends garbage: a broken stream is fatal
  }
  if (state === null) { queued.push(inv); return; }
  dispatch(inv);
}

function dispatch(inv) {
  runOne(state, inv).then(send, (e) => {
    send(['result', inv.id, 500, [], Buffer.from(oneLine(e)), { errorType: 'Runtime.InternalError', errorMessage: oneLine(e) }, [], 0]);
  });
}

let pending = Buffer.alloc(0);
sock.on('data', (chunk) => {
  pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
  while (pending.length >= 4) {
    const size = pending.readUInt32BE(0);
    if (size > MAX_FRAME) process.exit(1);
    if (pending.length < 4 + size) break;
    const frame = pending.subarray(4, 4 + size);
    pending = pending.subarray(4 + size);
    onFrame(frame);
  }
});
sock.on('end', () => process.exit(0));
sock.on('close', () => process.exit(0));
sock.on('error', () => process.exit(0));

// A rejection or exception no invocation catches must not take the instance down silently: log it
// (to the current invocation if any) and keep serving, as Lambda's Node runtime does for stray rejections.
process.on('unhandledRejection', (reason) => {
  (als.getStore() || fallback).add('stderr', `Unhandled promise rejection: ${reason && reason.stack ? reason.stack : reason}\n`);
});

function start() {
  lineMax = spec.log_line_max || lineMax;
  linesMax = spec.log_lines_max || linesMax;
  initBuf.lineMax = lineMax;
  initBuf.linesMax = linesMax;
  init().then((st) => {
    const initMs = Number(process.hrtime.bigint() - T0) / 1e6;
    // pid 0: the launcher knows it (in a pid namespace process.pid means nothing to the server)
    const info = `node ${process.version} process (${BLANK ? 'pre-started' : 'started for this instance'}; no zygote)`;
    send(['ready', 0, initMs, sandboxInfo ? `${info}; sandbox: ${sandboxInfo}` : info]);
    fallback = new LogBuffer(lineMax, linesMax);
    fallback.lines = initBuf.drain(); // init output reaches the first invocation's logs, as in Python
    state = st;
    for (const inv of queued.splice(0)) dispatch(inv);
  }, (err) => {
    if (err instanceof InitError) return sendInitError(err.payload());
    return sendInitError({
      errorType: 'Runtime.InitError',
      errorMessage: `${err && err.name ? err.name : 'Error'}: ${err && err.message ? err.message : err}`,
      stackTrace: err && err.stack ? String(err.stack).split('\n').slice(1, 11).map((l) => l.trim()) : [],
    });
  });
}

if (!BLANK) start();
