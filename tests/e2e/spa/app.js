// Hand-written SPA fixture for the portero e2e test (no build step).
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };

  fetch("/api/whoami/", { credentials: "same-origin" })
    .then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    })
    .then(function (j) {
      $("tenant").textContent = j.tenant;
      $("backend-host").textContent = j.host;
    })
    .catch(function (e) { $("tenant").textContent = "error: " + e.message; });

  var message = "hello from the SPA " + Math.random().toString(36).slice(2, 8);
  // wss:// on an https:// page: the browser blocks ws:// there (mixed content).
  var ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/echo/");
  ws.onopen = function () { $("ws-status").textContent = "open"; };
  ws.onmessage = function (ev) {
    var m = JSON.parse(ev.data);
    if (m.type === "hello") {
      $("ws-tenant").textContent = m.tenant;
      ws.send(message);
    } else if (m.type === "echo") {
      $("echo").textContent = m.data;
    }
  };
  ws.onerror = function () { $("ws-status").textContent = "error"; };
  ws.onclose = function (ev) {
    if ($("ws-status").textContent !== "error") $("ws-status").textContent = "closed " + ev.code;
  };
  window.__expectedEcho = message;
})();
