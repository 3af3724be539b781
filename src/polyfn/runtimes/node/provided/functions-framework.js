'use strict';
// polyfn's stand-in for '@google-cloud/functions-framework': `functions.http(name, fn)` and
// `functions.cloudEvent(name, fn)` register handlers that the gcp flavor resolves by name.
const _registry = { http: new Map(), cloudevent: new Map(), kind: new Map() };

function http(name, fn) {
  _registry.http.set(name, fn);
  _registry.kind.set(fn, 'http');
}

function cloudEvent(name, fn) {
  _registry.cloudevent.set(name, fn);
  _registry.kind.set(fn, 'cloudevent');
}

module.exports = { http, cloudEvent, _registry };
