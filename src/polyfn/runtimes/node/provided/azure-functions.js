'use strict';
// polyfn's stand-in for '@azure/functions' (Node.js programming model v4): `app.http(name, {handler})`
// and its shortcuts register handlers that the azure flavor resolves by name. Other trigger kinds
// (`app.timer`, `app.storageQueue`, ...) register too and receive the event payload.
const registry = new Map(); // name -> {kind, handler, options}
const settings = { enableHttpStream: false }; // app.setup(...): a stream body is streamed only when enabled

function register(kind) {
  return (name, options) => {
    const opts = typeof options === 'function' ? { handler: options } : { ...(options || {}) };
    registry.set(name, { kind, handler: opts.handler, options: opts });
  };
}

const http = register('http');
const app = {
  http,
  get: (n, o) => http(n, { ...(typeof o === 'function' ? { handler: o } : o), methods: ['GET'] }),
  post: (n, o) => http(n, { ...(typeof o === 'function' ? { handler: o } : o), methods: ['POST'] }),
  put: (n, o) => http(n, { ...(typeof o === 'function' ? { handler: o } : o), methods: ['PUT'] }),
  patch: (n, o) => http(n, { ...(typeof o === 'function' ? { handler: o } : o), methods: ['PATCH'] }),
  deleteRequest: (n, o) => http(n, { ...(typeof o === 'function' ? { handler: o } : o), methods: ['DELETE'] }),
  timer: register('timer'),
  storageBlob: register('blob'),
  storageQueue: register('queue'),
  serviceBusQueue: register('queue'),
  eventHub: register('event'),
  generic: register('event'),
  setup: (options) => { settings.enableHttpStream = Boolean(options && options.enableHttpStream); },
  hook: { appStart: () => {}, appTerminate: () => {}, preInvocation: () => {}, postInvocation: () => {} },
};

class HttpResponse {
  constructor(init = {}) {
    Object.assign(this, init);
  }
}

module.exports = { app, HttpResponse, _registry: registry, _settings: settings };
