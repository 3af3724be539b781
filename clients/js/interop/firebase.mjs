// The real `firebase` JS SDK against a polyfn node, as it would talk to Firebase's emulators. Run by
// tests/e2e/test_apps_firebase.py with POLYFN_URL and POLYFN_APP set; prints one JSON object of what it saw.
import { initializeApp } from 'firebase/app';
import { connectAuthEmulator, createUserWithEmailAndPassword, getAuth, signInAnonymously, signInWithEmailAndPassword, signOut } from 'firebase/auth';
import { connectFunctionsEmulator, getFunctions, httpsCallable } from 'firebase/functions';

const url = new URL(process.env.POLYFN_URL);
const appId = process.env.POLYFN_APP;
const app = initializeApp({ apiKey: appId, projectId: appId, appId: `1:0:web:${appId}` });
const auth = getAuth(app);
connectAuthEmulator(auth, url.origin, { disableWarnings: true });
const functions = getFunctions(app);
connectFunctionsEmulator(functions, url.hostname, Number(url.port));

async function call(name, data) {
  try {
    return { result: (await httpsCallable(functions, name)(data)).data };
  } catch (e) {
    return { code: e.code, message: e.message, details: e.details ?? null };
  }
}

const out = {};
out.unauthenticated = await call('addMessage', { text: 'hi' });
const anon = await signInAnonymously(auth);
out.anonymous = { uid: anon.user.uid, isAnonymous: anon.user.isAnonymous };
const claims = (await anon.user.getIdTokenResult()).claims;
out.claims = { provider: claims.firebase.sign_in_provider, aud: claims.aud, sub: claims.sub };
out.v2 = await call('addMessage', { text: 'hello' });
out.invalid = await call('addMessage', {});
out.v1 = await call('hello', { name: 'ann', big: 12345678901 });
out.python = await call('greet', { name: 'bob' });
out.pythonError = await call('greet', {});
out.missing = await call('no-such-function', {});
out.crash = await call('crash', {});
await signOut(auth);
const email = `ann-${Date.now()}@example.com`;
const made = await createUserWithEmailAndPassword(auth, email, 'correct horse battery');
await signOut(auth);
const back = await signInWithEmailAndPassword(auth, email, 'correct horse battery');
out.password = { same: made.user.uid === back.user.uid, email: back.user.email, anonymousUid: out.anonymous.uid !== back.user.uid };
try {
  await signInWithEmailAndPassword(auth, email, 'wrong password!!');
  out.wrongPassword = 'signed in?!';
} catch (e) {
  out.wrongPassword = e.code;
}
out.afterPassword = await call('addMessage', { text: 'again' });
out.tokenRefresh = (await back.user.getIdToken(true)).split('.').length;
console.log(JSON.stringify(out));
process.exit(0);
