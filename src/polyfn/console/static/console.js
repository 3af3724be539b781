// polyfn console: the little behaviour htmx does not cover. No inline script anywhere (CSP: script-src 'self').
// Untrusted text (function output, log lines) is only ever inserted with textContent / text nodes.
(function () {
  "use strict";

  // Invoke editor: refuse malformed JSON before sending, with an inline error next to the editor.
  function checkPayload(form) {
    var area = form.querySelector("textarea[name=payload]");
    var err = form.querySelector("#payload-error");
    if (!area || !err) return true;
    var text = area.value.trim();
    if (text === "") { err.hidden = true; return true; }
    try {
      JSON.parse(text);
      err.hidden = true;
      area.removeAttribute("aria-invalid");
      return true;
    } catch (e) {
      err.textContent = "Malformed JSON: " + e.message;
      err.hidden = false;
      area.setAttribute("aria-invalid", "true");
      return false;
    }
  }

  document.addEventListener("htmx:beforeRequest", function (evt) {
    var form = evt.detail && evt.detail.elt;
    if (form && form.id === "invoke-form" && !checkPayload(form)) evt.preventDefault();
    else if (form && form.id === "invoke-form" && document.getElementById("invoke-stream").checked) {
      evt.preventDefault();
      streamInvoke(form);
    }
  });

  // Invoke with "stream" ticked: the response's pieces are shown as they arrive (docs/streaming.md).
  function streamInvoke(form) {
    var out = document.getElementById("invoke-result");
    var head = document.createElement("p");
    var pre = document.createElement("pre");
    head.id = "invoke-stream-status";
    head.textContent = "waiting for the function…";
    pre.id = "invoke-stream-body";
    pre.className = "result";
    out.textContent = "";
    out.appendChild(head);
    out.appendChild(pre);
    fetch(form.getAttribute("hx-post") + "-stream", { method: "POST", body: new FormData(form), credentials: "same-origin" })
      .then(function (resp) {
        var aid = resp.headers.get("x-polyfn-activation-id") || "";
        var status = "HTTP " + resp.status + (aid ? " · activation " + aid.slice(0, 12) : "");
        head.textContent = status + " · streaming…";
        var reader = resp.body.getReader();
        var decoder = new TextDecoder();
        function pump() {
          return reader.read().then(function (r) {
            if (r.done) {
              head.textContent = status + " · done";
              head.setAttribute("data-state", "done");
              return undefined;
            }
            pre.appendChild(document.createTextNode(decoder.decode(r.value, { stream: true })));
            return pump();
          });
        }
        return pump();
      })
      .catch(function (e) {
        head.textContent = "the stream broke off: " + e.message;
        head.setAttribute("data-state", "broken");
      });
  }
  document.addEventListener("input", function (evt) {
    if (evt.target && evt.target.id === "payload") {
      var err = document.getElementById("payload-error");
      if (err && !err.hidden) checkPayload(evt.target.form);
    }
  });

  // Live logs over Server-Sent Events.
  function fmtTime(ts) {
    var d = new Date(ts * 1000);
    function p(n, w) { return String(n).padStart(w || 2, "0"); }
    return p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds()) + "." + p(d.getMilliseconds(), 3);
  }

  function startLiveLogs() {
    var pre = document.getElementById("live-logs");
    if (!pre || !window.EventSource) return;
    var state = document.getElementById("live-state");
    var max = 500;
    var src = new EventSource(pre.getAttribute("data-src"));
    src.onopen = function () { if (state) state.textContent = "live"; };
    src.onerror = function () { if (state) state.textContent = "reconnecting…"; };
    src.onmessage = function (evt) {
      var rec;
      try { rec = JSON.parse(evt.data); } catch (e) { return; }
      var line = fmtTime(rec.ts) + " " + String(rec.activation || "").slice(0, 8) + " " + rec.stream + " " + rec.line + "\n";
      var span = document.createElement("span");
      span.className = rec.stream === "stderr" ? "stderr" : "stdout";
      span.textContent = line;
      var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.appendChild(span);
      while (pre.childNodes.length > max) pre.removeChild(pre.firstChild);
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    };
    window.addEventListener("pagehide", function () { src.close(); });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startLiveLogs);
  else startLiveLogs();
})();
