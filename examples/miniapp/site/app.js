// Photo notes, written against wx.cloud (the same calls work in a WeChat mini-program page). The page
// signs in anonymously (the SDK does it on the first call), saves a note in the `notes` collection, uploads
// its photo straight to storage, and watches the notes: a storage trigger makes each thumbnail and marks
// the note, and the list updates by itself (no polling). The collection's rule lets each user see and
// change only their own notes.
wx.cloud.init({ env: 'photo-notes', traceUser: true });
const db = wx.cloud.database();
const notes = db.collection('notes');

const $ = (id) => document.getElementById(id);
const urls = new Map(); // thumbnail fileID → temporary URL

function showError(e) {
  $('error').hidden = false;
  $('error').textContent = e.errMsg || e.message;
}

async function render(docs) {
  const want = docs.map((n) => n.thumbID).filter((id) => id && !urls.has(id));
  if (want.length) {
    const { fileList } = await wx.cloud.getTempFileURL({ fileList: want });
    for (const f of fileList) if (f.status === 0) urls.set(f.fileID, f.tempFileURL);
  }
  $('notes').replaceChildren(...docs.map((n) => {
    const li = document.createElement('li');
    const url = n.thumbID && urls.get(n.thumbID);
    li.dataset.ready = String(Boolean(url));
    const pic = url ? Object.assign(document.createElement('img'), { src: url, alt: '' })
      : Object.assign(document.createElement('div'), { className: 'pending', textContent: n.fileID ? 'thumbnail…' : 'uploading…' });
    const body = document.createElement('div');
    body.append(Object.assign(document.createElement('p'), { textContent: n.text || '(no words)' }),
      Object.assign(document.createElement('time'), { textContent: n.created.toLocaleTimeString() }));
    li.append(pic, body);
    return li;
  }));
}

$('photo').addEventListener('change', () => {
  const file = $('photo').files[0];
  $('pick-label').textContent = file ? `+ ${file.name}` : '+ Take or pick a photo';
  $('save').disabled = !file;
});

$('compose').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const file = $('photo').files[0];
  $('save').disabled = true;
  $('error').hidden = true;
  $('progress').hidden = false;
  try {
    // the note first: its id names the photo, so the thumbnail finds its note
    const { _id } = await notes.add({ data: { text: $('text').value.slice(0, 500), created: db.serverDate() } });
    const ext = (file.name.split('.').pop() || 'jpg').toLowerCase();
    const task = wx.cloud.uploadFile({ cloudPath: `photos/${_id}.${ext}`, file });
    task.onProgressUpdate((p) => { $('progress').value = p.progress; });
    const { fileID } = await task;
    await notes.doc(_id).update({ data: { fileID } });
    $('compose').reset();
    $('pick-label').textContent = '+ Take or pick a photo';
  } catch (e) {
    showError(e);
  } finally {
    $('progress').hidden = true;
    $('save').disabled = !$('photo').files[0];
  }
});

(async () => {
  try {
    await wx.cloud.auth().getAccessToken(); // signs in (anonymously) the first time
    const me = wx.cloud.auth().currentUser;
    $('who').textContent = `signed in anonymously as ${me.uid.slice(0, 8)}…`;
    let latest = [];
    let drawing = Promise.resolve(); // one render at a time, always of the newest snapshot
    notes.orderBy('created', 'desc').limit(50).watch({
      onChange: (snapshot) => {
        latest = snapshot.docs;
        drawing = drawing.then(() => render(latest)).catch(showError);
      },
      onError: showError,
    });
  } catch (e) {
    showError(e);
  }
})();
