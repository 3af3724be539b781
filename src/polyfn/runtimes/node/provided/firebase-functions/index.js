'use strict';
// polyfn's 'firebase-functions': HTTPS functions written for Firebase, running on polyfn's `gcp` flavor.
//   require('firebase-functions') / '/https' / '/v2' / '/v2/https'   the v2 API (as in firebase-functions 6+):
//       onCall([options,] (request, response) => …)   request = {data, auth: {uid, token, rawToken}, rawRequest,
//                                                     acceptsStreaming: false, instanceIdToken}
//       onRequest([options,] (req, res) => …)
//   require('firebase-functions/v1') / '/v1/https'                    the v1 API:
//       https.onCall((data, context) => …)            context = {auth: {uid, token}, rawRequest, instanceIdToken}
//       https.onRequest((req, res) => …); region(…) and runWith(…) return the same namespace
//   HttpsError(code, message, details), logger (console), and a few no-op option helpers.
// onCall returns an HTTP handler speaking Firebase's callable protocol: POST {"data": …} (application/json) in,
// {"result": …} or {"error": {"status", "message", "details"}} out. The caller is the identity polyfn verified
// from the ID token before the function ran (the node answers 401 UNAUTHENTICATED for a bad one); an
// Authorization header alone proves nothing here, so `auth` is undefined without that verification.

const CODES = {
  ok: 200, cancelled: 499, unknown: 500, 'invalid-argument': 400, 'deadline-exceeded': 504, 'not-found': 404,
  'already-exists': 409, 'permission-denied': 403, unauthenticated: 401, 'resource-exhausted': 429,
  'failed-precondition': 400, aborted: 409, 'out-of-range': 400, unimplemented: 501, internal: 500,
  unavailable: 503, 'data-loss': 500,
};

class HttpsError extends Error {
  constructor(code, message, details) {
    super(message);
    if (!Object.prototype.hasOwnProperty.call(CODES, code)) throw new Error(`Unknown error code: ${code}.`);
    this.name = 'HttpsError';
    this.code = code;
    this.details = details;
    this.httpErrorCode = { canonicalName: code.toUpperCase().replace(/-/g, '_'), status: CODES[code] };
  }

  toJSON() {
    const out = { status: this.httpErrorCode.canonicalName, message: this.message };
    if (this.details !== undefined) out.details = this.details;
    return out;
  }
}

const LONG_TYPES = new Set(['type.googleapis.com/google.protobuf.Int64Value', 'type.googleapis.com/google.protobuf.UInt64Value']);

// The callable protocol's value encoding: JSON, with 64-bit integers wrapped as {"@type": …, "value": "123"}.
function decode(value) {
  if (Array.isArray(value)) return value.map(decode);
  if (value && typeof value === 'object') {
    if (LONG_TYPES.has(value['@type'])) return Number(value.value);
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, decode(v)]));
  }
  return value;
}

function encode(value) {
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') return null;
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(encode);
  if (value && typeof value === 'object') {
    if (typeof value.toJSON === 'function') return encode(value.toJSON());
    return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined).map(([k, v]) => [k, encode(v)]));
  }
  return value;
}

function badRequest(message) {
  return new HttpsError('invalid-argument', message || 'Bad Request');
}

// (req, res) → the protocol around `call(data, auth, req)`.
function callable(call) {
  const handler = async (req, res) => {
    try {
      if (req.method !== 'POST') throw badRequest(`Bad Request: ${req.method} is not POST`);
      const type = String(req.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
      if (type !== 'application/json') throw badRequest('Bad Request: the Content-Type must be application/json');
      const body = req.body;
      if (!body || typeof body !== 'object' || !('data' in body)) throw badRequest('Bad Request: the body must be {"data": …}');
      const id = req._polyfnIdentity;
      const auth = id ? { uid: id.uid, token: { ...(id.claims || {}), uid: id.uid }, rawToken: id.token } : undefined;
      const result = await call(decode(body.data), auth, req);
      return res.status(200).json({ result: encode(result) });
    } catch (err) {
      let e = err;
      if (!(err instanceof HttpsError)) {
        console.error('Unhandled error', err);
        e = new HttpsError('internal', 'INTERNAL');
      }
      return res.status(e.httpErrorCode.status).json({ error: e.toJSON() });
    }
  };
  handler.__endpoint = { platform: 'gcfv2', callableTrigger: {} };
  return handler;
}

function handlerArg(a, b) {
  const fn = typeof a === 'function' ? a : b;
  if (typeof fn !== 'function') throw new TypeError('onCall/onRequest needs a handler function');
  return fn;
}

const logger = {
  log: (...a) => console.log(...a), info: (...a) => console.info(...a), debug: (...a) => console.debug(...a),
  warn: (...a) => console.warn(...a), error: (...a) => console.error(...a), write: (e) => console.log(JSON.stringify(e)),
};

const v2https = {
  HttpsError,
  onCall(optsOrHandler, maybeHandler) {
    const fn = handlerArg(optsOrHandler, maybeHandler);
    return callable((data, auth, req) => fn(
      { data, auth, rawRequest: req, acceptsStreaming: false, app: undefined,
        instanceIdToken: req.headers['firebase-instance-id-token'] },
      { sendChunk: async () => false, signal: new AbortController().signal },
    ));
  },
  onRequest(optsOrHandler, maybeHandler) {
    return handlerArg(optsOrHandler, maybeHandler);
  },
};

const v1https = {
  HttpsError,
  onCall(fn) {
    return callable((data, auth, req) => fn(data, {
      auth: auth && { uid: auth.uid, token: auth.token }, rawRequest: req, app: undefined,
      instanceIdToken: req.headers['firebase-instance-id-token'],
    }));
  },
  onRequest(fn) {
    return handlerArg(fn);
  },
};

const v1 = { https: v1https, logger, config: () => ({}) };
v1.region = () => v1;
v1.runWith = () => v1;

const v2 = { https: v2https, logger, setGlobalOptions: () => {}, onCall: v2https.onCall, onRequest: v2https.onRequest, HttpsError };

module.exports = { ...v2, v1, v2, _v1https: v1https, _v2https: v2https };
