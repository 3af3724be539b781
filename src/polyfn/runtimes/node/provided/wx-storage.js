'use strict';
// wx-server-sdk's files, on polyfn's object store: uploadFile, downloadFile, getTempFileURL, deleteFile.
// A file id is `cloud://{env}.{bucket}/{path}` as the app platform gives it (apps/storage.py); files go to the
// env's app bucket (`app-{env}`, or POLYFN_WX_BUCKET). The server SDK has the function's rights, not an end
// user's: it talks S3 to the store (AWS_ENDPOINT_URL_S3) signed (SigV4) with the function's own key, which polyfn
// puts in every instance's environment.
const crypto = require('crypto');
const http = require('http');
const https = require('https');

const URL_TTL_DEFAULT = 3600;
const URL_TTL_MAX = 7 * 24 * 3600;

function credentials() {
  const { AWS_ACCESS_KEY_ID: id, AWS_SECRET_ACCESS_KEY: secret, AWS_ENDPOINT_URL_S3: endpoint } = process.env;
  if (!id || !secret || !endpoint) throw new Error('polyfn did not give this instance an object store (AWS_ENDPOINT_URL_S3)');
  return { id, secret, endpoint, region: process.env.AWS_REGION || 'us-east-1' };
}

const sha256 = (data) => crypto.createHash('sha256').update(data).digest('hex');
const hmac = (key, data) => crypto.createHmac('sha256', key).update(data).digest();
const encode = (s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

// SigV4 for S3 (path-style): the headers of a signed request, or the query of a presigned URL.
function sign(method, bucket, key, { query = {}, body = Buffer.alloc(0), presign = 0 } = {}) {
  const c = credentials();
  const url = new URL(c.endpoint);
  const now = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  const day = now.slice(0, 8);
  const scope = `${day}/${c.region}/s3/aws4_request`;
  const path = `/${encode(bucket)}${key === undefined ? '' : `/${key.split('/').map(encode).join('/')}`}`;
  const q = { ...query };
  const headers = { host: url.host };
  let payload = 'UNSIGNED-PAYLOAD';
  if (presign) {
    Object.assign(q, { 'X-Amz-Algorithm': 'AWS4-HMAC-SHA256', 'X-Amz-Credential': `${c.id}/${scope}`, 'X-Amz-Date': now,
      'X-Amz-Expires': String(presign), 'X-Amz-SignedHeaders': 'host' });
  } else {
    payload = sha256(body);
    Object.assign(headers, { 'x-amz-content-sha256': payload, 'x-amz-date': now });
  }
  const names = Object.keys(headers).sort();
  const canonicalQuery = Object.keys(q).sort().map((k) => `${encode(k)}=${encode(q[k])}`).join('&');
  const canonical = [method, path, canonicalQuery, names.map((n) => `${n}:${headers[n]}\n`).join(''), names.join(';'), payload].join('\n');
  const toSign = ['AWS4-HMAC-SHA256', now, scope, sha256(canonical)].join('\n');
  const key4 = hmac(hmac(hmac(hmac(`AWS4${c.secret}`, day), c.region), 's3'), 'aws4_request');
  const signature = crypto.createHmac('sha256', key4).update(toSign).digest('hex');
  if (presign) return `${url.origin}${path}?${canonicalQuery}&X-Amz-Signature=${signature}`;
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${c.id}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`;
  return { url: `${url.origin}${path}${canonicalQuery ? `?${canonicalQuery}` : ''}`, headers };
}

function s3(method, bucket, key, body) {
  const data = body === undefined ? Buffer.alloc(0) : body;
  const { url, headers } = sign(method, bucket, key, { body: data });
  if (data.length) headers['content-length'] = data.length;
  return new Promise((resolve, reject) => {
    const req = (url.startsWith('https:') ? https : http).request(url, { method, headers }, (res) => {
      const chunks = [];
      res.on('data', (ch) => chunks.push(ch));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end(data);
  });
}

function s3Error(res) {
  const text = res.body.toString('utf8');
  const code = (text.match(/<Code>([^<]*)<\/Code>/) || [])[1] || `HTTP ${res.status}`;
  const message = (text.match(/<Message>([^<]*)<\/Message>/) || [])[1] || '';
  return `${code}${message ? `: ${message}` : ''}`;
}

function parseFileID(fileID) {
  const m = /^cloud:\/\/([^./]+)\.([^/]+)\/(.+)$/.exec(String(fileID || ''));
  if (!m) throw new Error(`fileID ${JSON.stringify(fileID)} is not cloud://{env}.{bucket}/{path}`);
  return { env: m[1], bucket: m[2], path: m[3] };
}

function fail(api, message, errCode = -1) {
  const err = new Error(`${api}:fail ${message}`);
  err.errCode = errCode;
  err.errMsg = err.message;
  return err;
}

async function uploadFile(env, { cloudPath, fileContent } = {}) {
  if (!cloudPath || typeof cloudPath !== 'string') throw fail('cloud.uploadFile', 'parameter.cloudPath should be a string');
  if (fileContent === undefined || fileContent === null) throw fail('cloud.uploadFile', 'parameter.fileContent is required (a Buffer or a string)');
  const body = Buffer.isBuffer(fileContent) ? fileContent : Buffer.from(typeof fileContent === 'string' ? fileContent : await readStream(fileContent));
  const bucket = process.env.POLYFN_WX_BUCKET || `app-${env}`;
  const path = cloudPath.replace(/^\/+/, '');
  const res = await s3('PUT', bucket, path, body);
  if (res.status >= 300) throw fail('cloud.uploadFile', s3Error(res), res.status);
  return { fileID: `cloud://${env}.${bucket}/${path}`, statusCode: 200, errMsg: 'uploadFile:ok' };
}

function readStream(stream) {
  return new Promise((resolve, reject) => {
    if (!stream || typeof stream.on !== 'function') return reject(fail('cloud.uploadFile', 'fileContent must be a Buffer, a string or a readable stream'));
    const chunks = [];
    stream.on('data', (ch) => chunks.push(Buffer.from(ch)));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
    return undefined;
  });
}

async function downloadFile({ fileID } = {}) {
  let f;
  try { f = parseFileID(fileID); } catch (e) { throw fail('cloud.downloadFile', e.message); }
  const res = await s3('GET', f.bucket, f.path);
  if (res.status >= 300) throw fail('cloud.downloadFile', s3Error(res), res.status);
  return { fileContent: res.body, statusCode: 200, errMsg: 'downloadFile:ok' };
}

async function getTempFileURL({ fileList } = {}) {
  if (!Array.isArray(fileList)) throw fail('cloud.getTempFileURL', 'parameter.fileList should be an array');
  return {
    fileList: fileList.map((item) => {
      const fileID = typeof item === 'string' ? item : item && item.fileID;
      const maxAge = Math.min(Math.max(Number((item && item.maxAge) || URL_TTL_DEFAULT), 1), URL_TTL_MAX);
      try {
        const f = parseFileID(fileID);
        return { fileID, tempFileURL: sign('GET', f.bucket, f.path, { presign: maxAge }), maxAge, status: 0, errMsg: 'ok' };
      } catch (e) {
        return { fileID, tempFileURL: '', maxAge, status: -1, errMsg: e.message };
      }
    }),
    errMsg: 'getTempFileURL:ok',
  };
}

async function deleteFile({ fileList } = {}) {
  if (!Array.isArray(fileList)) throw fail('cloud.deleteFile', 'parameter.fileList should be an array');
  const out = [];
  for (const fileID of fileList) {
    try {
      const f = parseFileID(fileID);
      const res = await s3('DELETE', f.bucket, f.path);
      out.push(res.status < 300 ? { fileID, status: 0, errMsg: 'ok' } : { fileID, status: res.status, errMsg: s3Error(res) });
    } catch (e) {
      out.push({ fileID, status: -1, errMsg: e.message });
    }
  }
  return { fileList: out, errMsg: 'deleteFile:ok' };
}

module.exports = { uploadFile, downloadFile, getTempFileURL, deleteFile, parseFileID };
