// The real OpenWhisk JavaScript client (npm `openwhisk`, apache/openwhisk-client-js) against polyfn's OpenWhisk
// API: packages with parameters and a binding, a zip action sent as a Buffer (base64, no `binary`), triggers,
// rules, firing, activations, the alarm feed, an application error. Prints one JSON object of what it saw.
import openwhisk from 'openwhisk';

const ow = openwhisk({ apihost: process.env.POLYFN_URL, api_key: `polyfn-admin:${process.env.POLYFN_KEY}`, namespace: '_' });
const out = {};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function poll(get) {
  for (let i = 0; i < 300; i += 1) {
    try { return await get(); } catch (e) { if (e.statusCode !== 404) throw e; }
    await sleep(100);
  }
  throw new Error('not found in time');
}

out.info = await ow.namespaces.list();

await ow.packages.create({ name: 'owjs-tools', package: { parameters: [{ key: 'greeting', value: 'hello' }] } });
await ow.actions.create({ name: 'owjs-tools/greet', kind: 'nodejs:20',
  action: "function main(p) { return { msg: p.greeting + ' ' + (p.name || 'you') }; }" });
out.invoked = await ow.actions.invoke({ name: 'owjs-tools/greet', params: { name: 'ann' }, blocking: true, result: true });
await ow.packages.create({ name: 'owjs-fr', package: { binding: { namespace: '_', name: 'owjs-tools' },
  parameters: [{ key: 'greeting', value: 'bonjour' }] } });
out.bound = await ow.actions.invoke({ name: 'owjs-fr/greet', blocking: true, result: true });
out.packageActions = (await ow.packages.get({ name: 'owjs-tools' })).actions.map((a) => a.name);

await ow.actions.create({ name: 'owjs-zip', kind: 'nodejs:20', action: Buffer.from(process.env.OW_ZIP_B64, 'base64') });
out.zip = await ow.actions.invoke({ name: 'owjs-zip', params: { s: 'ab' }, blocking: true, result: true });

await ow.actions.create({ name: 'owjs-echo', kind: 'nodejs:20', action: 'function main(p) { return { from: p.from, n: p.n }; }' });
await ow.triggers.create({ name: 'owjs-t', trigger: { parameters: [{ key: 'from', value: 'trigger' }] } });
await ow.rules.create({ name: 'owjs-r', trigger: 'owjs-t', action: 'owjs-echo' });
const fired = await ow.triggers.invoke({ name: 'owjs-t', params: { n: 7 } });
const act = await poll(() => ow.activations.get({ name: fired.activationId }));
out.triggerActivation = { name: act.name, result: act.response.result };
out.ruleLog = JSON.parse(act.logs[0]);
const child = await poll(() => ow.activations.get({ name: out.ruleLog.activationId }));
out.childResult = child.response.result;
await ow.rules.disable({ name: 'owjs-r' });
out.ruleStatus = (await ow.rules.get({ name: 'owjs-r' })).status;
out.firedWhileDisabled = await ow.triggers.invoke({ name: 'owjs-t', params: { n: 8 } }).then(() => 'fired', (e) => e.statusCode);
await ow.rules.enable({ name: 'owjs-r' });
out.lists = {
  packages: (await ow.packages.list()).map((p) => p.name).sort(),
  triggers: (await ow.triggers.list()).map((t) => t.name).sort(),
  rules: (await ow.rules.list()).map((r) => `${r.name}:${r.status}`).sort(),
};

await ow.triggers.create({ name: 'owjs-alarm', trigger: { annotations: [{ key: 'feed', value: '/whisk.system/alarms/alarm' }] } });
const feed = await ow.feeds.create({ name: '/whisk.system/alarms/alarm', trigger: 'owjs-alarm', params: { cron: '0 0 1 1 *' } });
out.feed = feed.response ? feed.response.result : feed;
await ow.feeds.delete({ name: '/whisk.system/alarms/alarm', trigger: 'owjs-alarm' });

await ow.actions.create({ name: 'owjs-fail', kind: 'nodejs:20', action: "function main() { return { error: 'nope' }; }" });
try {
  await ow.actions.invoke({ name: 'owjs-fail', blocking: true, result: true });
  out.appError = 'no error';
} catch (e) {
  out.appError = { status: e.statusCode, error: e.error };
}

await ow.rules.delete({ name: 'owjs-r' });
await ow.triggers.delete({ name: 'owjs-t' });
await ow.triggers.delete({ name: 'owjs-alarm' });
await ow.packages.delete({ name: 'owjs-fr' });
await ow.actions.delete({ name: 'owjs-tools/greet' });
await ow.packages.delete({ name: 'owjs-tools' });
out.afterCleanup = (await ow.packages.list()).map((p) => p.name);
console.log(JSON.stringify(out));
