// Photo notes, written against wx.cloud (the same calls work in a WeChat mini-program page). The page
// signs in anonymously (the SDK does it on the first call), uploads the photo straight to storage, saves a
// note through the `notes` function, and keeps the list fresh: a storage trigger makes each thumbnail.
wx.cloud.init({ env: 'photo-notes', traceUser: true });

const $ = (id) => document.getElementById(id);
const thumbs = new Map(); // fileID → temporary URL

function showError(e) {
  $('error').hidden = false;
  $('error').textContent = e.errMsg || e.message;
}

async function refresh() {
  const { result: notes } = await wx.cloud.callFunction({ name: 'notes', data: { action: 'list' } });
  const want = notes.filter((n) => n.thumbReady && !thumbs.has(n.thumbID)).map((n) => n.thumbID);
  if (want.length) {
    const { fileList } = await wx.cloud.getTempFileURL({ fileList: want });
    for (const f of fileList) if (f.status === 0) thumbs.set(f.fileID, f.tempFileURL);
  }
  $('notes').replaceChildren(...notes.map((n) => {
    const li = document.createElement('li');
    li.dataset.ready = String(Boolean(thumbs.get(n.thumbID)));
    const pic = thumbs.get(n.thumbID) ? Object.assign(document.createElement('img'), { src: thumbs.get(n.thumbID), alt: '' })
      : Object.assign(document.createElement('div'), { className: 'pending', textContent: 'thumbnail…' });
    const body = document.createElement('div');
    body.append(Object.assign(document.createElement('p'), { textContent: n.text || '(no words)' }),
      Object.assign(document.createElement('time'), { textContent: new Date(n.created * 1000).toLocaleTimeString() }));
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
  const me = wx.cloud.auth().currentUser;
  $('save').disabled = true;
  $('error').hidden = true;
  $('progress').hidden = false;
  try {
    const ext = (file.name.split('.').pop() || 'jpg').toLowerCase();
    const task = wx.cloud.uploadFile({ cloudPath: `photos/${me.uid}/${Date.now()}.${ext}`, file });
    task.onProgressUpdate((p) => { $('progress').value = p.progress; });
    const { fileID } = await task;
    await wx.cloud.callFunction({ name: 'notes', data: { action: 'add', fileID, text: $('text').value } });
    $('compose').reset();
    $('pick-label').textContent = '+ Take or pick a photo';
    await refresh();
  } catch (e) {
    showError(e);
  } finally {
    $('progress').hidden = true;
    $('save').disabled = !$('photo').files[0];
  }
});

(async () => {
  try {
    await refresh(); // the first call signs in
    const me = wx.cloud.auth().currentUser;
    $('who').textContent = `signed in anonymously as ${me.uid.slice(0, 8)}…`;
    setInterval(() => refresh().catch(showError), 1500); // live: new notes and finished thumbnails appear
  } catch (e) {
    showError(e);
  }
})();
