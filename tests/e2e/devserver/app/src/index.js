// The dev server SPA: whoami through portero, the Channels echo socket, and
// a text from ./message.js that HMR replaces in place.
import { message } from "./message.js";

const $ = (id) => document.getElementById(id);

function render(text) {
  $("message").textContent = text;
}
render(message);

fetch("/api/whoami/", { credentials: "same-origin" })
  .then((r) => {
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    return r.json();
  })
  .then((j) => {
    $("tenant").textContent = j.tenant;
    $("backend-host").textContent = j.host;
  })
  .catch((e) => { $("tenant").textContent = `error: ${e.message}`; });

const sent = `hello from the dev server SPA ${Math.random().toString(36).slice(2, 8)}`;
window.__expectedEcho = sent;
const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/echo/`);
ws.onopen = () => { $("ws-status").textContent = "open"; };
ws.onmessage = (ev) => {
  const m = JSON.parse(ev.data);
  if (m.type === "hello") {
    $("ws-tenant").textContent = m.tenant;
    ws.send(sent);
  } else if (m.type === "echo") {
    $("echo").textContent = m.data;
  }
};
ws.onerror = () => { $("ws-status").textContent = "error"; };
ws.onclose = (ev) => {
  if ($("ws-status").textContent !== "error") $("ws-status").textContent = `closed ${ev.code}`;
};

if (module.hot) {
  // The new message.js replaces the old one; this module is not re-run, so
  // the page (and its sockets) stay as they are.
  module.hot.accept("./message.js", () => {
    render(message);
    window.__hmrUpdates = (window.__hmrUpdates || 0) + 1;
  });
}
