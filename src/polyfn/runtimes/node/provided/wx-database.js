'use strict';
// wx-server-sdk's database(), working against polyfn's wx.cloud database API (/wx/database/{action}, see
// docs/database.md) with the function's own key (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: collections the
// function was granted with `polyfn db grant`).
//   const db = cloud.database();  const _ = db.command;
//   db.collection('todos').add({ data }) / .doc(id).get() / .set({ data }) / .update({ data }) / .remove()
//   db.collection('todos').where({ done: false, n: _.gt(1) }).orderBy('n', 'desc').skip(0).limit(10)
//     .field({ title: true }).get() / .count() / .update({ data }) / .remove()
//   db.serverDate({ offset }), db.RegExp({ regexp, options }), db.createCollection(name)
// Values travel as JSON with dates as {"$date": ms}; commands as {"$gt": 1}, {"$inc": 1} …
const http = require('http');
const https = require('https');

class Command {
  constructor(op, arg) { this.op = op; this.arg = arg; }
  and(...more) { return new Command('$and', [this, ...flat(more)]); }
  or(...more) { return new Command('$or', [this, ...flat(more)]); }
}
class ServerDate { constructor(options) { this.offset = (options && options.offset) || 0; } }
class DbRegExp {
  constructor(options) {
    if (!options || typeof options.regexp !== 'string') throw new Error('db.RegExp: regexp must be a string');
    this.regexp = options.regexp; this.options = options.options || '';
  }
}

function flat(args) { return args.length === 1 && Array.isArray(args[0]) ? args[0] : args; }

const command = {
  eq: (v) => new Command('$eq', v), neq: (v) => new Command('$neq', v),
  gt: (v) => new Command('$gt', v), gte: (v) => new Command('$gte', v),
  lt: (v) => new Command('$lt', v), lte: (v) => new Command('$lte', v),
  in: (v) => new Command('$in', v), nin: (v) => new Command('$nin', v),
  exists: (v) => new Command('$exists', !!v),
  and: (...a) => new Command('$and', flat(a)), or: (...a) => new Command('$or', flat(a)),
  not: (c) => new Command('$not', c),
  inc: (n) => new Command('$inc', n), remove: () => new Command('$remove', true),
  set: (v) => new Command('$set', v), pull: (v) => new Command('$pull', v),
  push: (v) => {
    if (v && typeof v === 'object' && !Array.isArray(v) && Array.isArray(v.each)) {
      const spec = { $each: v.each };
      if (v.position !== undefined) spec.$position = v.position;
      return new Command('$push', spec);
    }
    return new Command('$push', v);
  },
};

function encode(v) {
  if (v instanceof Command) return { [v.op]: encode(v.arg) };
  if (v instanceof Date) return { $date: v.getTime() };
  if (v instanceof ServerDate) return { $serverDate: { offset: v.offset } };
  if (v instanceof DbRegExp) return { $regex: v.regexp, $options: v.options };
  if (v instanceof RegExp) return { $regex: v.source, $options: v.flags.replace(/[^ims]/g, '') };
  if (Array.isArray(v)) return v.map(encode);
  if (v && typeof v === 'object') {
    if (v.$each !== undefined) return { $each: encode(v.$each), ...(v.$position !== undefined ? { $position: v.$position } : {}) };
    const out = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = encode(x);
    return out;
  }
  return v;
}

function decode(v) {
  if (Array.isArray(v)) return v.map(decode);
  if (v && typeof v === 'object') {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === '$date') return new Date(v.$date);
    const out = {};
    for (const k of keys) out[k] = decode(v[k]);
    return out;
  }
  return v;
}

function failure(action, errCode, errMsg) {
  const e = new Error(errMsg);
  e.errCode = errCode;
  e.errMsg = errMsg;
  return e;
}

function call(action, body) {
  const base = process.env.POLYFN_API_URL;
  const id = process.env.AWS_ACCESS_KEY_ID;
  const secret = process.env.AWS_SECRET_ACCESS_KEY;
  return new Promise((resolve, reject) => {
    if (!base) return reject(failure(action, -501005, `${action}:fail -501005 polyfn did not provide POLYFN_API_URL`));
    if (!id || !secret) return reject(failure(action, -401001, `${action}:fail -401001 the function has no key`));
    const payload = Buffer.from(JSON.stringify(body));
    const url = new URL(`/wx/database/${action}`, base);
    const req = (url.protocol === 'https:' ? https : http).request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': payload.length, authorization: `Bearer ${id}:${secret}` },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        let out;
        try { out = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch (e) {
          return reject(failure(action, -501001, `${action}:fail -501001 the database answered ${res.statusCode} without JSON`));
        }
        if (res.statusCode >= 400 || out.errCode) return reject(failure(action, out.errCode || -501001, out.errMsg || `${action}:fail`));
        resolve(decode(out));
      });
    });
    req.on('error', (e) => reject(failure(action, -501001, `${action}:fail -501001 ${e.message}`)));
    req.end(payload);
    return undefined;
  });
}

// WeChat's APIs take success/fail/complete callbacks as well as returning a Promise
function settle(promise, options) {
  if (!options || !(options.success || options.fail || options.complete)) return promise;
  promise.then((r) => { if (options.success) options.success(r); }, (e) => { if (options.fail) options.fail(e); })
    .finally(() => { if (options.complete) options.complete(); });
  return undefined;
}

class Query {
  constructor(db, name, state) { this._db = db; this._name = name; this._state = state || {}; }
  _with(change) { return new Query(this._db, this._name, { ...this._state, ...change }); }
  where(query) {
    if (!query || typeof query !== 'object') throw new Error('collection.where: the query must be an object');
    return this._with({ query: encode(query) });
  }
  orderBy(field, direction) {
    if (direction !== 'asc' && direction !== 'desc') throw new Error('orderBy: direction must be "asc" or "desc"');
    return this._with({ order: [...(this._state.order || []), [field, direction]] });
  }
  limit(n) { return this._with({ limit: n }); }
  skip(n) { return this._with({ skip: n }); }
  field(projection) { return this._with({ field: projection }); }
  _body(extra) { return { collection: this._name, ...this._state, ...extra }; }
  get(options) { return settle(call('collection.get', this._body()), options); }
  count(options) { return settle(call('collection.count', this._body()), options); }
  update(options) { return settle(call('collection.update', this._body({ data: encode((options || {}).data) })), options); }
  remove(options) { return settle(call('collection.remove', this._body()), options); }
  watch() { throw new Error('watch() is served to mini-programs and web pages by the app platform, not in functions'); }
}

class Collection extends Query {
  constructor(db, name) { super(db, name, {}); this.collectionName = name; }
  doc(id) { return new Document(this._db, this._name, id); }
  add(options) {
    const data = (options || {}).data;
    return settle(call('collection.add', { collection: this._name, data: encode(data) }), options);
  }
}

class Document {
  constructor(db, name, id, projection) { this._db = db; this._name = name; this._id = id; this._field = projection; }
  field(projection) { return new Document(this._db, this._name, this._id, projection); }
  _body(extra) { return { collection: this._name, id: this._id, ...extra }; }
  get(options) {
    const p = call('document.get', this._body(this._field ? { field: this._field } : {})).then((r) => {
      if (r.data === null && this._db.throwOnNotFound) {
        throw failure('document.get', -1, `document.get:fail document with _id ${this._id} does not exist`);
      }
      return r;
    });
    return settle(p, options);
  }
  set(options) { return settle(call('document.set', this._body({ data: encode((options || {}).data) })), options); }
  update(options) { return settle(call('document.update', this._body({ data: encode((options || {}).data) })), options); }
  remove(options) { return settle(call('document.remove', this._body()), options); }
}

class Database {
  constructor(options) {
    this.config = options || {};
    this.throwOnNotFound = this.config.throwOnNotFound !== false;
    this.command = command;
  }
  collection(name) {
    if (typeof name !== 'string' || !name) throw new Error('db.collection: the name must be a non-empty string');
    return new Collection(this, name);
  }
  serverDate(options) { return new ServerDate(options); }
  RegExp(options) { return new DbRegExp(options); }
  createCollection(name) { return call('database.createCollection', { collection: name }); }
}

module.exports = { database: (options) => new Database(options), Database, command };
