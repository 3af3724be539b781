/*
 * polyfn-cloud: the wx.cloud client API against a polyfn node, for browsers, mini-programs and Node.js.
 *
 *   <script src="https://NODE/sdk/polyfn-cloud.js"></script>       (UMD: window.polyfnCloud, and window.wx.cloud
 *   wx.cloud.init({ env: 'my-env-id', traceUser: true })              when the page has no wx.cloud of its own)
 *   const { result } = await wx.cloud.callFunction({ name: 'add', data: { a: 1, b: 2 } })
 *
 *   import cloud from 'https://NODE/sdk/polyfn-cloud.mjs'            (ES module)
 *   const cloud = require('polyfn-cloud')                             (CommonJS: Node.js, mini-program npm)
 *
 * Every API takes `{…, success, fail, complete}` like wx.cloud (then it returns nothing, or a task) or returns
 * a Promise. Results carry `errMsg: 'cloud.NAME:ok'`; errors are Error objects with `errMsg`
 * ('cloud.NAME:fail …'), `errCode` (polyfn's stable code, e.g. 'token_expired') and `statusCode`.
 *
 * Sign-in: a user token is needed for most calls. Without one the SDK signs in by itself the first time it
 * needs to: anonymously in a browser, with `wx.login()` (the app's custom sign-in function) in a
 * mini-program; `init({ autoSignIn: false })` turns that off. Sessions are kept in localStorage (browser),
 * wx storage (mini-program) or memory, per env (`init({ persistence: 'none' })`: this object only); access
 * tokens are refreshed before they expire.
 *
 * No build step and no dependencies: fetch / XMLHttpRequest in browsers, wx.request / wx.uploadFile in
 * mini-programs, fetch in Node.js 20+.
 */
(function (root, factory) {
  'use strict';
  var api = factory(root);
  if (typeof module === 'object' && module && module.exports) module.exports = api;
  if (root) {
    root.polyfnCloud = api;
    // A page written for wx.cloud runs in a browser: give it wx.cloud unless the platform has one.
    if (typeof root.document !== 'undefined') {
      root.wx = root.wx || {};
      if (!root.wx.cloud) root.wx.cloud = api;
    }
  }
})(typeof globalThis !== 'undefined' ? globalThis : this, function (root) {
  'use strict';

  var VERSION = '0.2.0';
  var wxApi = root && root.wx && typeof root.wx.request === 'function' ? root.wx : null; // in a mini-program
  var REFRESH_EARLY = 60; // seconds before expiry a token is refreshed

  // --- small helpers -----------------------------------------------------------------------------------

  function CloudError(api, message, code, status, extra) {
    var err = new Error('cloud.' + api + ':fail ' + (code ? code + ': ' : '') + message);
    err.errMsg = err.message;
    err.errCode = code || 'unknown';
    err.statusCode = status || 0;
    if (extra) for (var k in extra) if (Object.prototype.hasOwnProperty.call(extra, k)) err[k] = extra[k];
    return err;
  }

  // An API in wx's style: callbacks when any is given (returns `task`), else a Promise (with the task's methods).
  function wxStyle(apiName, run) {
    return function (options) {
      var opts = options || {};
      var task = {}; // what `run` offers before it settles (uploadFile's onProgressUpdate)
      var started;
      try {
        started = Promise.resolve(run.call(this, opts, task));
      } catch (e) {
        started = Promise.reject(e);
      }
      var promise = started
        .then(function (res) {
          res.errMsg = 'cloud.' + apiName + ':ok';
          return res;
        }, function (e) {
          if (!e || !e.errMsg) e = CloudError(apiName, (e && e.message) || String(e), 'client_error');
          throw e;
        });
      if (opts.success || opts.fail || opts.complete) {
        promise.then(function (res) {
          if (opts.success) opts.success(res);
          if (opts.complete) opts.complete(res);
        }, function (err) {
          if (opts.fail) opts.fail(err);
          if (opts.complete) opts.complete(err);
        });
        return Object.keys(task).length ? task : undefined;
      }
      for (var k in task) if (Object.prototype.hasOwnProperty.call(task, k)) promise[k] = task[k];
      return promise;
    };
  }

  function parseJSON(text) {
    if (text === '' || text === undefined || text === null) return null;
    if (typeof text !== 'string') return text;
    try { return JSON.parse(text); } catch (e) { return text; }
  }

  // Node.js (tests, scripts, server-side rendering): the node named by $POLYFN_URL, read at init
  function envEndpoint() {
    if (typeof process !== 'undefined' && process.env && !(root && root.document)) return process.env.POLYFN_URL || '';
    return '';
  }

  function scriptOrigin() {
    var doc = root && root.document;
    var script = doc && doc.currentScript;
    if (script && script.src) return new URL(script.src).origin;
    if (root && root.location && /^https?:/.test(root.location.protocol)) return root.location.origin;
    return '';
  }

  var defaultEndpoint = scriptOrigin();

  // --- transport ---------------------------------------------------------------------------------------

  // One HTTP request: {method, url, headers, body (string)} → {status, headers(lower-case), data}
  function httpRequest(req) {
    if (wxApi) {
      return new Promise(function (resolve, reject) {
        wxApi.request({
          url: req.url, method: req.method, header: req.headers, data: req.body, dataType: 'text', responseType: 'text',
          success: function (res) {
            var h = {};
            for (var k in res.header || {}) h[k.toLowerCase()] = res.header[k];
            resolve({ status: res.statusCode, headers: h, data: parseJSON(res.data) });
          },
          fail: function (e) { reject(new Error(e.errMsg || 'request failed')); },
        });
      });
    }
    return fetch(req.url, { method: req.method, headers: req.headers, body: req.body }).then(function (res) {
      return res.text().then(function (text) {
        var h = {};
        res.headers.forEach(function (v, k) { h[k.toLowerCase()] = v; });
        return { status: res.status, headers: h, data: parseJSON(text) };
      });
    });
  }

  // A multipart POST of `fields` + the file (a presigned POST to storage), with progress where the platform has it.
  function postForm(url, fields, file, onProgress) {
    if (wxApi && typeof file === 'string') {
      return new Promise(function (resolve, reject) {
        var t = wxApi.uploadFile({
          url: url, filePath: file, name: 'file', formData: fields,
          success: function (res) { resolve({ status: res.statusCode, data: res.data }); },
          fail: function (e) { reject(new Error(e.errMsg || 'upload failed')); },
        });
        if (t && t.onProgressUpdate) {
          t.onProgressUpdate(function (p) {
            onProgress({ progress: p.progress, totalBytesSent: p.totalBytesSent, totalBytesExpectedToSend: p.totalBytesExpectedToSend });
          });
        }
      });
    }
    var form = new FormData();
    Object.keys(fields).forEach(function (k) { form.append(k, fields[k]); });
    var blob = file;
    if (typeof Blob !== 'undefined' && !(file instanceof Blob)) blob = new Blob([file]);
    form.append('file', blob, (file && file.name) || 'file');
    var total = blob.size || 0;
    if (typeof XMLHttpRequest !== 'undefined') {
      return new Promise(function (resolve, reject) {
        var xhr = new XMLHttpRequest();
        xhr.open('POST', url);
        xhr.upload.onprogress = function (ev) {
          var expected = ev.lengthComputable ? ev.total : total;
          onProgress({ progress: expected ? Math.round(ev.loaded * 100 / expected) : 0, totalBytesSent: ev.loaded,
            totalBytesExpectedToSend: expected });
        };
        xhr.onload = function () { resolve({ status: xhr.status, data: xhr.responseText }); };
        xhr.onerror = function () { reject(new Error('upload failed: network error')); };
        xhr.send(form);
      });
    }
    return fetch(url, { method: 'POST', body: form }).then(function (res) {
      return res.text().then(function (text) {
        onProgress({ progress: 100, totalBytesSent: total, totalBytesExpectedToSend: total });
        return { status: res.status, data: text };
      });
    });
  }

  // --- session storage ---------------------------------------------------------------------------------

  var memory = {};
  var store = {
    get: function (key) {
      try {
        if (wxApi && wxApi.getStorageSync) return parseJSON(wxApi.getStorageSync(key)) || null;
        if (root && root.localStorage) return parseJSON(root.localStorage.getItem(key));
      } catch (e) { /* storage unavailable: memory below */ }
      return memory[key] || null;
    },
    set: function (key, value) {
      memory[key] = value;
      try {
        var text = value === null ? '' : JSON.stringify(value);
        if (wxApi && wxApi.setStorageSync) wxApi.setStorageSync(key, text);
        else if (root && root.localStorage) {
          if (value === null) root.localStorage.removeItem(key); else root.localStorage.setItem(key, text);
        }
      } catch (e) { /* memory only */ }
    },
  };

  // --- the cloud object --------------------------------------------------------------------------------

  function Cloud() {
    this.config = null;
    this._session = null;
    this._pending = null; // a sign-in or refresh in flight
    this._listeners = [];
    this.DYNAMIC_CURRENT_ENV = 'DYNAMIC_CURRENT_ENV';
    this.version = VERSION;
  }

  Cloud.prototype.init = function (options) {
    var o = options || {};
    var env = o.env;
    if (env && typeof env === 'object') env = env.functions || env.database || env.storage;
    if (!env || typeof env !== 'string') throw CloudError('init', 'init({env}) needs the app id (polyfn apps create NAME)', 'invalid_env');
    var endpoint = (o.endpoint || defaultEndpoint || envEndpoint()).replace(/\/+$/, '');
    if (!endpoint) throw CloudError('init', 'no endpoint: pass init({env, endpoint: "https://your-polyfn-node"})', 'invalid_endpoint');
    this.config = { env: env, endpoint: endpoint, traceUser: o.traceUser !== false,
      autoSignIn: o.autoSignIn === undefined ? (wxApi ? 'wx' : 'anonymous') : o.autoSignIn,
      persistence: o.persistence || 'local' };
    this._key = 'polyfn-cloud:' + endpoint + ':' + env;
    this._session = this.config.persistence === 'none' ? null : store.get(this._key);
    return this;
  };

  Cloud.prototype._need = function (api) {
    if (!this.config) throw CloudError(api, 'call wx.cloud.init({env}) first', 'not_initialized');
    return this.config;
  };

  Cloud.prototype._url = function (path) {
    var c = this.config;
    return c.endpoint + '/app/' + encodeURIComponent(c.env) + '/' + path;
  };

  // A JSON request to the app's endpoint; errors become CloudErrors named after `api`.
  Cloud.prototype._raw = function (api, method, path, body, token) {
    var headers = { 'content-type': 'application/json', 'x-polyfn-sdk': VERSION };
    if (token) headers.authorization = 'Bearer ' + token;
    return httpRequest({ method: method, url: this._url(path), headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body) }).then(function (res) {
      if (res.status >= 400) {
        var e = res.data && res.data.error;
        var code = (e && e.code) || res.headers['x-polyfn-error'] || (res.data && res.data.errorType) || String(res.status);
        var message = (e && e.message) || (res.data && res.data.errorMessage) || (typeof res.data === 'string' ? res.data : 'HTTP ' + res.status);
        throw CloudError(api, message, code, res.status, { requestID: res.headers['x-polyfn-activation-id'] || '', response: res.data });
      }
      return res;
    });
  };

  // --- sessions ----------------------------------------------------------------------------------------

  Cloud.prototype._setSession = function (tokens) {
    this._session = tokens ? { access_token: tokens.access_token, refresh_token: tokens.refresh_token,
      expires_at: tokens.expires_at, user: tokens.user } : null;
    if (this.config.persistence !== 'none') store.set(this._key, this._session);
    var user = this._session ? this._session.user : null;
    this._listeners.forEach(function (fn) { try { fn(user); } catch (e) { /* a listener's own error */ } });
    return this._session;
  };

  Cloud.prototype._signIn = function (api, path, body) {
    var self = this;
    return this._raw(api, 'POST', path, body).then(function (res) { return self._setSession(res.data); });
  };

  // The access token to send: the session's, refreshed when close to expiry; signing in first when allowed.
  Cloud.prototype._token = function (api, forceRefresh) {
    var self = this;
    var s = this._session;
    var now = Date.now() / 1000;
    if (s && !forceRefresh && s.expires_at - REFRESH_EARLY > now) return Promise.resolve(s.access_token);
    if (this._pending) return this._pending;
    var p;
    if (s && s.refresh_token) {
      p = this._signIn(api, 'auth/refresh', { refresh_token: s.refresh_token }).catch(function (e) {
        if (e.statusCode !== 401) throw e;
        self._setSession(null); // revoked or expired session: start again
        return self._autoSignIn(api);
      });
    } else {
      p = this._autoSignIn(api);
    }
    this._pending = p.then(function (session) { self._pending = null; return session ? session.access_token : null; },
      function (e) { self._pending = null; throw e; });
    return this._pending;
  };

  Cloud.prototype._autoSignIn = function (api) {
    var mode = this.config.autoSignIn;
    if (mode === 'anonymous') return this._signIn(api, 'auth/anonymous', {});
    if (mode === 'wx' && wxApi && wxApi.login) {
      var self = this;
      return new Promise(function (resolve, reject) {
        wxApi.login({ success: function (r) { resolve(r.code); }, fail: function (e) { reject(new Error(e.errMsg)); } });
      }).then(function (code) { return self._signIn(api, 'auth/custom', { data: { code: code } }); });
    }
    return Promise.resolve(null);
  };

  // A request as the signed-in user; a token refused as expired is refreshed once and the request retried.
  Cloud.prototype._authed = function (api, method, path, body) {
    var self = this;
    this._need(api);
    return this._token(api).then(function (token) {
      return self._raw(api, method, path, body, token).catch(function (e) {
        if (e.statusCode === 401 && (e.errCode === 'token_expired' || e.errCode === 'token_revoked') && self._session) {
          return self._token(api, true).then(function (fresh) { return self._raw(api, method, path, body, fresh); });
        }
        throw e;
      });
    });
  };

  // --- functions ---------------------------------------------------------------------------------------

  Cloud.prototype.callFunction = wxStyle('callFunction', function (opts) {
    if (!opts.name || typeof opts.name !== 'string') throw CloudError('callFunction', 'parameter.name should be a string', 'invalid_parameter');
    return this._authed('callFunction', 'POST', 'call/' + encodeURIComponent(opts.name),
      opts.data === undefined ? {} : opts.data).then(function (res) {
      return { result: res.data, requestID: res.headers['x-polyfn-activation-id'] || '' };
    });
  });

  // --- storage -----------------------------------------------------------------------------------------

  Cloud.prototype.uploadFile = wxStyle('uploadFile', function (opts, task) {
    var self = this;
    var listeners = [];
    task.onProgressUpdate = function (fn) { listeners.push(fn); return task; };
    if (typeof opts.onUploadProgress === 'function') listeners.push(opts.onUploadProgress);
    var file = opts.filePath !== undefined ? opts.filePath : opts.file;
    if (!opts.cloudPath || typeof opts.cloudPath !== 'string') throw CloudError('uploadFile', 'parameter.cloudPath should be a string', 'invalid_parameter');
    if (file === undefined || file === null) throw CloudError('uploadFile', 'pass filePath (mini-program) or file (a File or Blob)', 'invalid_parameter');
    var size = typeof file === 'string' ? undefined : (file.size !== undefined ? file.size : file.byteLength);
    var type = (file && file.type) || opts.contentType || '';
    return this._authed('uploadFile', 'POST', 'storage/upload', { cloudPath: opts.cloudPath, size: size, contentType: type })
      .then(function (res) {
        var grant = res.data;
        var fields = Object.assign({}, grant.fields);
        if (type) fields['Content-Type'] = type;
        return postForm(grant.url, fields, file, function (p) {
          listeners.forEach(function (fn) { try { fn(p); } catch (e) { /* listener */ } });
        }).then(function (res2) {
          if (res2.status >= 300) {
            var text = typeof res2.data === 'string' ? res2.data : JSON.stringify(res2.data);
            var code = (/<Code>([^<]+)<\/Code>/.exec(text) || [])[1] || 'upload_refused';
            var msg = (/<Message>([^<]+)<\/Message>/.exec(text) || [])[1] || text;
            throw CloudError('uploadFile', msg, code, res2.status);
          }
          return { fileID: grant.fileID, statusCode: res2.status };
        });
      });
  });

  Cloud.prototype.getTempFileURL = wxStyle('getTempFileURL', function (opts) {
    var list = (opts.fileList || []).map(function (f) { return typeof f === 'string' ? { fileID: f } : f; });
    return this._authed('getTempFileURL', 'POST', 'storage/urls', { fileList: list }).then(function (res) {
      return { fileList: res.data.fileList };
    });
  });

  Cloud.prototype.deleteFile = wxStyle('deleteFile', function (opts) {
    return this._authed('deleteFile', 'POST', 'storage/delete', { fileList: opts.fileList || [] }).then(function (res) {
      return { fileList: res.data.fileList };
    });
  });

  Cloud.prototype.downloadFile = wxStyle('downloadFile', function (opts) {
    var self = this;
    return this.getTempFileURL({ fileList: [opts.fileID] }).then(function (res) {
      var f = res.fileList[0];
      if (f.status !== 0) throw CloudError('downloadFile', f.errMsg, f.errCode || 'download_refused', f.statusCode || 403);
      if (wxApi && wxApi.downloadFile) {
        return new Promise(function (resolve, reject) {
          wxApi.downloadFile({ url: f.tempFileURL, success: function (r) { resolve({ tempFilePath: r.tempFilePath, statusCode: r.statusCode }); },
            fail: function (e) { reject(CloudError('downloadFile', e.errMsg, 'download_failed')); } });
        });
      }
      return fetch(f.tempFileURL).then(function (r) {
        if (!r.ok) throw CloudError('downloadFile', 'HTTP ' + r.status, 'download_failed', r.status);
        return r.blob().then(function (blob) {
          var url = root && root.URL && root.URL.createObjectURL && root.document ? root.URL.createObjectURL(blob) : f.tempFileURL;
          return { tempFilePath: url, statusCode: r.status, data: blob };
        });
      });
    }).then(function (out) { void self; return out; });
  });

  // --- auth --------------------------------------------------------------------------------------------

  Cloud.prototype.auth = function () {
    var self = this;
    this._need('auth');
    var wrap = function (name, fn) { return function () { self._need('auth'); return fn.apply(null, arguments); }; };
    return {
      get currentUser() { return self._session ? self._session.user : null; },
      signInAnonymously: wrap('signInAnonymously', function () { return self._signIn('auth', 'auth/anonymous', {}).then(userOf); }),
      signUpWithEmailAndPassword: wrap('signUp', function (email, password) {
        return self._signIn('auth', 'auth/signup', { email: email, password: password }).then(userOf);
      }),
      signInWithEmailAndPassword: wrap('signIn', function (email, password) {
        return self._signIn('auth', 'auth/signin', { email: email, password: password }).then(userOf);
      }),
      signInWithCustom: wrap('signInWithCustom', function (data) {
        return self._signIn('auth', 'auth/custom', { data: data }).then(userOf);
      }),
      signInWithWxLogin: wrap('signInWithWxLogin', function () {
        if (!wxApi || !wxApi.login) return Promise.reject(CloudError('auth', 'wx.login is only in mini-programs', 'unsupported'));
        var saved = self.config.autoSignIn;
        self.config.autoSignIn = 'wx';
        return self._autoSignIn('auth').then(function (s) { self.config.autoSignIn = saved; return userOf(s); });
      }),
      signOut: wrap('signOut', function () {
        var s = self._session;
        if (!s) return Promise.resolve();
        return self._raw('auth', 'POST', 'auth/signout', { refresh_token: s.refresh_token }, s.access_token)
          .catch(function () { /* signed out locally all the same */ })
          .then(function () { self._setSession(null); });
      }),
      getAccessToken: wrap('getAccessToken', function () { return self._token('auth'); }),
      onAuthStateChanged: function (fn) {
        self._listeners.push(fn);
        fn(self._session ? self._session.user : null);
        return function () { self._listeners = self._listeners.filter(function (x) { return x !== fn; }); };
      },
    };
  };

  function userOf(session) {
    return session ? session.user : null;
  }

  // --- database ----------------------------------------------------------------------------------------
  //
  //   var db = wx.cloud.database(); var _ = db.command;
  //   db.collection('notes').add({ data: { text: 'hi', at: db.serverDate() } })          → { _id }
  //   db.collection('notes').where({ n: _.gt(1) }).orderBy('at', 'desc').limit(10).get() → { data: [...] }
  //   db.collection('notes').doc(id).get() / .set({ data }) / .update({ data }) / .remove()
  //   var w = db.collection('notes').where({ done: false }).watch({ onChange: fn, onError: fn }); w.close()
  //
  // Requests go to POST /app/{env}/db/{action} as the signed-in user; the app's security rules decide what
  // they may read and write (a refused document fails with errCode -502003). Values travel as JSON with
  // dates as {"$date": ms} and commands as {"$gt": 1}; watch() reads server-sent events.

  function DbCommand(op, arg) { this.op = op; this.arg = arg; }
  DbCommand.prototype.and = function () { return new DbCommand('$and', [this].concat(flat(arguments))); };
  DbCommand.prototype.or = function () { return new DbCommand('$or', [this].concat(flat(arguments))); };
  function ServerDate(options) { this.offset = (options && options.offset) || 0; }
  function DbRegExp(options) {
    if (!options || typeof options.regexp !== 'string') throw new Error('db.RegExp: regexp must be a string');
    this.regexp = options.regexp;
    this.options = options.options || '';
  }

  function flat(args) {
    var list = Array.prototype.slice.call(args);
    return list.length === 1 && Array.isArray(list[0]) ? list[0] : list;
  }

  function cmd(op) { return function (v) { return new DbCommand(op, v); }; }
  var command = {
    eq: cmd('$eq'), neq: cmd('$neq'), gt: cmd('$gt'), gte: cmd('$gte'), lt: cmd('$lt'), lte: cmd('$lte'),
    in: cmd('$in'), nin: cmd('$nin'), exists: function (v) { return new DbCommand('$exists', !!v); },
    and: function () { return new DbCommand('$and', flat(arguments)); },
    or: function () { return new DbCommand('$or', flat(arguments)); },
    not: cmd('$not'), inc: cmd('$inc'), set: cmd('$set'), pull: cmd('$pull'),
    remove: function () { return new DbCommand('$remove', true); },
    push: function (v) {
      if (v && typeof v === 'object' && !Array.isArray(v) && Array.isArray(v.each)) {
        var spec = { $each: v.each };
        if (v.position !== undefined) spec.$position = v.position;
        return new DbCommand('$push', spec);
      }
      return new DbCommand('$push', v);
    },
  };

  function encode(v) {
    if (v instanceof DbCommand) { var c = {}; c[v.op] = encode(v.arg); return c; }
    if (v instanceof Date) return { $date: v.getTime() };
    if (v instanceof ServerDate) return { $serverDate: { offset: v.offset } };
    if (v instanceof DbRegExp) return { $regex: v.regexp, $options: v.options };
    if (v instanceof RegExp) return { $regex: v.source, $options: v.flags.replace(/[^ims]/g, '') };
    if (Array.isArray(v)) return v.map(encode);
    if (v && typeof v === 'object') {
      var out = {};
      for (var k in v) if (Object.prototype.hasOwnProperty.call(v, k) && v[k] !== undefined) out[k] = encode(v[k]);
      return out;
    }
    return v;
  }

  function decode(v) {
    if (Array.isArray(v)) return v.map(decode);
    if (v && typeof v === 'object') {
      var keys = Object.keys(v);
      if (keys.length === 1 && keys[0] === '$date') return new Date(v.$date);
      var out = {};
      keys.forEach(function (k) { out[k] = decode(v[k]); });
      return out;
    }
    return v;
  }

  function DbError(action, code, message, status) {
    var err = new Error(action + ':fail ' + code + ' ' + message);
    err.errMsg = err.message;
    err.errCode = code;
    err.statusCode = status || 0;
    return err;
  }

  // A failed request as WeChat's database errors: the node's errMsg when it gave one, else the token error.
  function dbFailure(action, e) {
    var r = e && e.response;
    if (r && typeof r === 'object' && r.errMsg) {
      var err = DbError(action, r.errCode, '', e.statusCode);
      err.message = err.errMsg = r.errMsg;
      return err;
    }
    if (e && e.errCode) return DbError(action, e.errCode, (r && r.error && r.error.message) || e.message, e.statusCode);
    return DbError(action, -501001, (e && e.message) || String(e));
  }

  // WeChat's database APIs take success/fail/complete callbacks as well as returning a Promise.
  function settle(promise, options) {
    if (!options || !(options.success || options.fail || options.complete)) return promise;
    promise.then(function (r) {
      if (options.success) options.success(r);
      if (options.complete) options.complete(r);
    }, function (e) {
      if (options.fail) options.fail(e);
      if (options.complete) options.complete(e);
    });
    return undefined;
  }

  function Database(cloud, options) {
    this._cloud = cloud;
    this.config = options || {};
    this.throwOnNotFound = this.config.throwOnNotFound !== false;
    this.command = command;
  }
  Database.prototype.collection = function (name) {
    if (typeof name !== 'string' || !name) throw new Error('db.collection: the name must be a non-empty string');
    return new Collection(this, name);
  };
  Database.prototype.serverDate = function (options) { return new ServerDate(options); };
  Database.prototype.RegExp = function (options) { return new DbRegExp(options); };
  Database.prototype._call = function (action, body) {
    var cloud = this._cloud;
    var run;
    try {
      run = cloud._authed(action, 'POST', 'db/' + action, body);
    } catch (e) {
      return Promise.reject(dbFailure(action, e));
    }
    return run.then(function (res) { return decode(res.data); }, function (e) { throw dbFailure(action, e); });
  };

  function Query(db, name, state) { this._db = db; this._name = name; this._state = state || {}; }
  Query.prototype._with = function (change) {
    var state = {};
    for (var k in this._state) state[k] = this._state[k];
    for (var j in change) state[j] = change[j];
    return new Query(this._db, this._name, state);
  };
  Query.prototype.where = function (query) {
    if (!query || typeof query !== 'object') throw new Error('collection.where: the query must be an object');
    return this._with({ query: encode(query) });
  };
  Query.prototype.orderBy = function (field, direction) {
    if (direction !== 'asc' && direction !== 'desc') throw new Error('orderBy: direction must be "asc" or "desc"');
    return this._with({ order: (this._state.order || []).concat([[field, direction]]) });
  };
  Query.prototype.limit = function (n) { return this._with({ limit: n }); };
  Query.prototype.skip = function (n) { return this._with({ skip: n }); };
  Query.prototype.field = function (projection) { return this._with({ field: projection }); };
  Query.prototype._body = function (extra) {
    var body = { collection: this._name };
    for (var k in this._state) body[k] = this._state[k];
    for (var j in extra || {}) body[j] = extra[j];
    return body;
  };
  Query.prototype.get = function (options) { return settle(this._db._call('collection.get', this._body()), options); };
  Query.prototype.count = function (options) { return settle(this._db._call('collection.count', this._body()), options); };
  Query.prototype.update = function (options) {
    return settle(this._db._call('collection.update', this._body({ data: encode((options || {}).data) })), options);
  };
  Query.prototype.remove = function (options) { return settle(this._db._call('collection.remove', this._body()), options); };
  Query.prototype.watch = function (options) {
    var o = options || {};
    if (typeof o.onChange !== 'function' || typeof o.onError !== 'function') {
      throw new Error('watch: pass { onChange(snapshot), onError(error) }');
    }
    var body = this._body();
    delete body.skip;
    delete body.field;
    return new RealtimeWatcher(this._db, body, o.onChange, o.onError);
  };

  function Collection(db, name) { Query.call(this, db, name, {}); this.collectionName = name; }
  Collection.prototype = Object.create(Query.prototype);
  Collection.prototype.constructor = Collection;
  Collection.prototype.doc = function (id) { return new DbDocument(this._db, this._name, id); };
  Collection.prototype.add = function (options) {
    return settle(this._db._call('collection.add', { collection: this._name, data: encode((options || {}).data) }), options);
  };

  function DbDocument(db, name, id, projection) { this._db = db; this._name = name; this._id = id; this._field = projection; }
  DbDocument.prototype.field = function (projection) { return new DbDocument(this._db, this._name, this._id, projection); };
  DbDocument.prototype._body = function (extra) {
    var body = { collection: this._name, id: this._id };
    for (var k in extra || {}) body[k] = extra[k];
    return body;
  };
  DbDocument.prototype.get = function (options) {
    var self = this;
    var p = this._db._call('document.get', this._body(this._field ? { field: this._field } : {})).then(function (r) {
      if (r.data === null && self._db.throwOnNotFound) {
        var e = DbError('document.get', -1, '', 404); // as wx-server-sdk words it (no code in the message)
        e.message = e.errMsg = 'document.get:fail document with _id ' + self._id + ' does not exist';
        throw e;
      }
      return r;
    });
    return settle(p, options);
  };
  DbDocument.prototype.set = function (options) {
    return settle(this._db._call('document.set', this._body({ data: encode((options || {}).data) })), options);
  };
  DbDocument.prototype.update = function (options) {
    return settle(this._db._call('document.update', this._body({ data: encode((options || {}).data) })), options);
  };
  DbDocument.prototype.remove = function (options) { return settle(this._db._call('document.remove', this._body()), options); };
  DbDocument.prototype.watch = function (options) {
    return new Query(this._db, this._name, { query: { _id: this._id } }).watch(options);
  };

  // --- realtime: collection.where(…).watch() ---------------------------------------------------------
  //
  // One streaming POST to db/collection.watch per watcher; the node answers server-sent events, each a
  // snapshot ({id, type: 'init' first, docs, docChanges}). A refused watch (rules, a bad query) calls onError
  // once and the watcher is closed. A stream that breaks after it began (a network change, the node
  // restarting) is opened again, after 0.5, 1, 2, 4, 8 s; the node's new initial snapshot is handed on as the
  // changes since the last one (WeChat's watch reconnects as well). A user who signed out in between, or five
  // failed attempts, end it with onError.

  var WATCH_RETRIES = 5;

  function RealtimeWatcher(db, body, onChange, onError) {
    this._db = db;
    this._body = body;
    this._closed = false;
    this._abort = null;
    this._docs = null; // the last snapshot's documents (null before the first)
    this._sid = 0;
    this._attempt = 0;
    this._uid = null; // the user who watches: a reconnect as someone else is refused
    var self = this;
    this._onChange = onChange;
    this._fail = function (e) {
      if (self._closed) return;
      self._closed = true;
      if (self._abort) self._abort();
      try { onError(e); } catch (x) { /* the listener's own error */ }
    };
    this._open(false);
  }

  RealtimeWatcher.prototype._deliver = function (snap) {
    var out = snap;
    if (snap.type === 'init' && this._docs !== null) { // a reconnect: what changed while it was away
      var changes = diffDocs(this._docs, snap.docs);
      this._docs = snap.docs;
      if (!changes.length) return;
      out = { id: ++this._sid, docs: snap.docs, docChanges: changes };
    } else {
      this._docs = snap.docs;
      out.id = snap.type === 'init' ? 0 : ++this._sid;
    }
    try { this._onChange(out); } catch (e) { /* the listener's own error */ }
  };

  RealtimeWatcher.prototype._broken = function (e) {
    var action = 'collection.watch';
    if (this._closed) return;
    var why = e ? 'the stream failed: ' + (e.message || e) : 'the node closed the stream';
    if (this._docs === null || this._attempt >= WATCH_RETRIES) {
      this._fail(DbError(action, -501001, why));
      return;
    }
    var self = this;
    var delay = 500 * Math.pow(2, this._attempt++);
    setTimeout(function () { if (!self._closed) self._open(false); }, delay);
  };

  RealtimeWatcher.prototype._open = function (retried) {
    var self = this;
    var cloud = this._db._cloud;
    var action = 'collection.watch';
    var token;
    try {
      cloud._need(action);
      token = cloud._token(action, retried);
    } catch (e) {
      token = Promise.reject(e);
    }
    token.then(function (tok) {
      if (self._closed) return;
      var uid = cloud._session && cloud._session.user ? cloud._session.user.uid : null;
      if (self._uid !== null && uid !== self._uid) {
        self._fail(DbError(action, 'token_revoked', 'the user who watched signed out', 401));
        return;
      }
      self._uid = uid;
      var headers = { 'content-type': 'application/json', accept: 'text/event-stream', 'x-polyfn-sdk': VERSION };
      if (tok) headers.authorization = 'Bearer ' + tok;
      var parser = eventParser(function (text) {
        if (self._closed) return;
        var snap;
        try { snap = decode(JSON.parse(text)); } catch (e) { return; }
        if (snap.type === 'init') self._attempt = 0;
        self._deliver(snap);
      });
      self._abort = openStream(cloud._url('db/' + action), headers, JSON.stringify(self._body), {
        data: parser,
        refused: function (status, text) {
          var answer = parseJSON(text);
          var e = dbFailure(action, { response: answer, statusCode: status,
            errCode: (answer && answer.error && answer.error.code) || String(status), message: 'HTTP ' + status });
          if (!retried && status === 401 && (e.errCode === 'token_expired' || e.errCode === 'token_revoked')) {
            self._open(true);
            return;
          }
          if (status >= 500 || status === 429) self._broken(e); else self._fail(e);
        },
        end: function (e) { self._broken(e); },
      });
    }, function (e) {
      if (e && (!e.statusCode || e.statusCode >= 500)) self._broken(e); else self._fail(dbFailure(action, e));
    });
  };

  RealtimeWatcher.prototype.close = function () {
    this._closed = true;
    if (this._abort) this._abort();
    return Promise.resolve();
  };

  // The changes from one list of documents to another, as watch's docChanges (by _id).
  function diffDocs(before, after) {
    var old = {};
    before.forEach(function (d) { old[d._id] = d; });
    var changes = [];
    after.forEach(function (d) {
      var was = old[d._id];
      delete old[d._id];
      if (!was) {
        changes.push({ id: changes.length, dataType: 'add', queueType: 'enqueue', docId: d._id, doc: d });
        return;
      }
      var updated = {};
      var removed = [];
      var any = false;
      Object.keys(d).forEach(function (k) {
        if (JSON.stringify(d[k]) !== JSON.stringify(was[k])) { updated[k] = d[k]; any = true; }
      });
      Object.keys(was).forEach(function (k) { if (!(k in d)) { removed.push(k); any = true; } });
      if (any) {
        changes.push({ id: changes.length, dataType: 'update', queueType: 'update', docId: d._id, doc: d,
          updatedFields: updated, removedFields: removed });
      }
    });
    Object.keys(old).forEach(function (id) {
      changes.push({ id: changes.length, dataType: 'remove', queueType: 'dequeue', docId: id, doc: old[id] });
    });
    return changes;
  }

  // Server-sent events from bytes: `feed(Uint8Array)` calls `onData(text)` for each event's data. Events end
  // with a blank line, which is ASCII, so complete events are never cut inside a character.
  function eventParser(onData) {
    var pending = new Uint8Array(0);
    var scanned = 0; // bytes of `pending` already searched for the blank line
    return function feed(bytes) {
      var both = new Uint8Array(pending.length + bytes.length);
      both.set(pending, 0);
      both.set(bytes, pending.length);
      pending = both;
      for (;;) {
        var end = -1;
        for (var j = Math.max(scanned, 1); j < pending.length; j++) if (pending[j] === 10 && pending[j - 1] === 10) { end = j; break; }
        if (end < 0) { scanned = pending.length; return; }
        var text = utf8(pending.subarray(0, end - 1));
        pending = pending.slice(end + 1);
        scanned = 0;
        var data = text.split('\n').filter(function (l) { return l.indexOf('data:') === 0; })
          .map(function (l) { return l.slice(5).replace(/^ /, ''); }).join('\n');
        if (data) onData(data);
      }
    };
  }

  function utf8(bytes) {
    if (typeof TextDecoder !== 'undefined') return new TextDecoder('utf-8').decode(bytes);
    var out = '';
    for (var i = 0; i < bytes.length;) {
      var b = bytes[i++];
      var cp = b < 0x80 ? b : b < 0xe0 ? ((b & 0x1f) << 6) | (bytes[i++] & 0x3f)
        : b < 0xf0 ? ((b & 0x0f) << 12) | ((bytes[i++] & 0x3f) << 6) | (bytes[i++] & 0x3f)
          : ((b & 0x07) << 18) | ((bytes[i++] & 0x3f) << 12) | ((bytes[i++] & 0x3f) << 6) | (bytes[i++] & 0x3f);
      out += String.fromCodePoint(cp);
    }
    return out;
  }

  // A streaming POST: `on.data(Uint8Array)` per chunk of a 200 answer, `on.refused(status, text)` for an
  // error answer, `on.end(error?)` when the stream ends. Returns a function that aborts it.
  function openStream(url, headers, body, on) {
    var aborted = false;
    if (wxApi) { // mini-program: wx.request with chunked transfer (base library 2.20.2+)
      var status = 0;
      var chunks = [];
      var task = wxApi.request({
        url: url, method: 'POST', header: headers, data: body, enableChunked: true, responseType: 'arraybuffer',
        success: function (res) {
          if (aborted) return;
          status = status || res.statusCode;
          if (status !== 200) {
            if (res.data && res.data.byteLength) chunks.push(new Uint8Array(res.data));
            var all = [];
            chunks.forEach(function (c) { for (var i = 0; i < c.length; i++) all.push(c[i]); });
            on.refused(status, utf8(new Uint8Array(all)));
          } else on.end(null);
        },
        fail: function (e) { if (!aborted) on.end(new Error(e.errMsg || 'request failed')); },
      });
      if (!task || typeof task.onChunkReceived !== 'function') { // an older base library: no chunked mode
        aborted = true;
        if (task && task.abort) task.abort();
        on.refused(400, JSON.stringify({ errCode: -501007, errMsg: 'collection.watch:fail -501007 watch() needs ' +
          'wx.request with enableChunked (base library 2.20.2 or later)' }));
        return function () {};
      }
      if (task.onHeadersReceived) task.onHeadersReceived(function (res) { status = res.statusCode; });
      task.onChunkReceived(function (res) {
        var bytes = new Uint8Array(res.data);
        if (status === 200) on.data(bytes); else chunks.push(bytes);
      });
      return function () { aborted = true; task.abort(); };
    }
    var controller = typeof AbortController !== 'undefined' ? new AbortController() : null;
    fetch(url, { method: 'POST', headers: headers, body: body, signal: controller ? controller.signal : undefined })
      .then(function (res) {
        if (res.status !== 200) return res.text().then(function (text) { on.refused(res.status, text); });
        var reader = res.body.getReader();
        var pump = function () {
          return reader.read().then(function (r) {
            if (r.done) { if (!aborted) on.end(null); return undefined; }
            on.data(r.value);
            return pump();
          });
        };
        return pump();
      })
      .catch(function (e) { if (!aborted) on.end(e); });
    return function () { aborted = true; if (controller) controller.abort(); };
  }

  Cloud.prototype.database = function (options) {
    this._need('database');
    return new Database(this, options);
  };

  // --- the module --------------------------------------------------------------------------------------

  var cloud = new Cloud();
  cloud.Cloud = Cloud; // several environments at once: new cloud.Cloud().init({env})
  cloud.CloudError = CloudError;
  cloud._internal = { wxStyle: wxStyle, httpRequest: httpRequest, store: store, eventParser: eventParser };
  return cloud;
});
