// The real `ali-oss` npm client uploading into polyfn's object store with temporary credentials that a
// function handed out (polyfn's AssumeRole, limited to one prefix). Run by tests/e2e/test_apps_sts.py with
// POLYFN_URL and POLYFN_APP set; prints one JSON object of what it saw.
import OSS from 'ali-oss';
import cloud from '../src/polyfn-cloud.mjs';

cloud.init({ env: process.env.POLYFN_APP, endpoint: process.env.POLYFN_URL, persistence: 'none' });
const { result: grant } = await cloud.callFunction({ name: 'oss-grant', data: {} });

const client = new OSS({
  region: 'oss-cn-hangzhou', accessKeyId: grant.AccessKeyId, accessKeySecret: grant.AccessKeySecret,
  stsToken: grant.SecurityToken, bucket: grant.bucket, endpoint: grant.endpoint,
});
client.setSLDEnabled(true); // path-style: BUCKET in the path, as for any endpoint that is not OSS's own domain

async function attempt(fn) {
  try {
    const r = await fn();
    return { ok: true, status: r.res.status };
  } catch (e) {
    return { ok: false, code: e.code, status: e.status };
  }
}

const out = { prefix: grant.prefix };
out.mine = await attempt(() => client.put(`${grant.prefix}hello.txt`, Buffer.from('hello from ali-oss')));
out.outside = await attempt(() => client.put('users/someone-else/x.txt', Buffer.from('no')));
out.read = await attempt(() => client.get(`${grant.prefix}hello.txt`));
const other = new OSS({ region: 'oss-cn-hangzhou', accessKeyId: grant.AccessKeyId, accessKeySecret: grant.AccessKeySecret,
  bucket: grant.bucket, endpoint: grant.endpoint });
other.setSLDEnabled(true);
out.noToken = await attempt(() => other.put(`${grant.prefix}x.txt`, Buffer.from('x')));
const forged = new OSS({ region: 'oss-cn-hangzhou', accessKeyId: grant.AccessKeyId.slice(0, -2) + (grant.AccessKeyId.endsWith('AA') ? 'BB' : 'AA'),
  accessKeySecret: grant.AccessKeySecret, stsToken: grant.SecurityToken, bucket: grant.bucket, endpoint: grant.endpoint });
forged.setSLDEnabled(true);
out.forged = await attempt(() => forged.put(`${grant.prefix}y.txt`, Buffer.from('y')));
console.log(JSON.stringify(out));
process.exit(0);
