// The status page's script: follows the page's event stream (server-sent events) and puts each
// fragment the daemon sends in place: no reloads, no polling. The fragments are rendered and
// escaped by the daemon; log output arrives as JSON strings and is added as text, never as
// markup. Without this script the page is a snapshot.
(function () {
  "use strict";
  var src = document.body.getAttribute("data-events");
  var conn = document.getElementById("conn");
  function state(text, cls) {
    if (conn) {
      conn.textContent = text;
      conn.className = "conn " + cls;
    }
  }
  if (!src || !window.EventSource) {
    return;
  }
  var es = new EventSource(src);
  function put(id, html) {
    var el = document.getElementById(id);
    if (el) {
      el.innerHTML = html;
    }
  }
  // The most log text the page keeps (the oldest goes first).
  var LOG_MAX = 256 * 1024;
  function log(text, reset) {
    var pre = document.getElementById("log");
    if (!pre) {
      return;
    }
    var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    var all = (reset ? "" : pre.textContent) + text;
    if (all.length > LOG_MAX) {
      all = all.slice(all.length - LOG_MAX);
    }
    pre.textContent = all;
    if (atEnd) {
      pre.scrollTop = pre.scrollHeight;
    }
  }
  es.addEventListener("open", function () { state("live", "live"); });
  es.addEventListener("error", function () { state("reconnecting\u2026", "lost"); });
  es.addEventListener("end", function () { state("daemon stopped; reconnecting\u2026", "lost"); });
  es.addEventListener("board", function (e) { put("board", e.data); });
  es.addEventListener("run", function (e) { put("run", e.data); });
  es.addEventListener("log-reset", function (e) { log(JSON.parse(e.data), true); });
  es.addEventListener("log", function (e) { log(JSON.parse(e.data), false); });
})();
