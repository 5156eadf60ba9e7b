// portero's page: the summary and the request inspector, live from
// /__portero/events (Server-Sent Events). Everything shown is set with
// textContent: request data is the client's and never becomes markup.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  let requests = [];       // oldest first, at most `size`
  let size = 300;
  let picked = null;

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function row(cells) {
    const tr = document.createElement("tr");
    for (const c of cells) tr.appendChild(c instanceof Node ? c : el("td", c));
    return tr;
  }
  function ago(iso) {
    if (!iso) return "–";
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    return Math.round(s / 3600) + " h ago";
  }
  function duration(s) {
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s";
  }
  function ms(v) { return v === null || v === undefined ? "–" : v + " ms"; }

  function summary(s) {
    $("version").textContent = s.version;
    $("uptime").textContent = duration(s.uptime_s);
    $("profile").textContent = s.profile;
    $("listeners").textContent = s.listeners.join(", ");
    $("config").textContent = s.config;
    $("held").textContent = s.held;
    $("connections").textContent = s.connections;
    const r = s.last_reload;
    $("reload").textContent = r ? (r.applied ? "applied " : "FAILED ") + ago(r.time) : "none yet";
    $("reload").className = r && !r.applied ? "bad" : "";
    $("reload-error").hidden = !(r && r.error);
    $("reload-error").textContent = r && r.error ? r.error : "";
    size = s.inspector_size;
    $("inspector-note").textContent = size === 0
      ? "(inspector off: admin.inspector_size = 0)"
      : "(last " + size + (s.inspector_unmask ? ", credentials shown" : ", credentials masked") +
        (s.inspector_bodies ? ", first " + s.inspector_bodies + " bytes of bodies" : ", bodies not kept") + ")";

    const ub = $("upstreams").tBodies[0];
    ub.replaceChildren(...s.upstreams.map((u) => {
      const t = u.traffic || {};
      const f = t.last_failure;
      const fail = el("td", f ? ago(f.time) + ": " + f.cause : "–", f ? "bad" : "");
      if (f) fail.title = f.time + " (" + f.status + ")";
      return row([u.name, u.url, t.requests || 0, t.errors || 0, u.held, u.open, u.idle,
        ms(t.p50_ms), ms(t.p99_ms), ago(t.last_success), fail]);
    }));
    $("tunnels").tBodies[0].replaceChildren(...s.tunnels.map((t) =>
      row([t.tenant || "–", el("td", t.host + t.path, "path"), duration(t.age_s), t.up, t.down])));
    $("tunnels-note").textContent = "(" + s.open_tunnels + " open" +
      (s.tunnels.length < s.open_tunnels ? ", live-reload sockets not listed" : "") + ")";
    $("refused").tBodies[0].replaceChildren(...s.refused.map((r) => {
      const when = el("td", ago(r.time));
      when.title = r.time;
      const why = el("td", r.reason, "why");
      return row([when, r.tenant || "–", r.host, el("td", r.path, "path"),
        el("td", r.status, "s" + String(r.status)[0]), r.origin || "(none)", why]);
    }));
    const tb = $("tenants").tBodies[0];
    const rows = s.tenants.map((t) => row([t.name, t.requests, t.errors, ago(t.last_seen)]));
    if (s.other_tenants.requests > 0) {
      const o = s.other_tenants;
      rows.push(row([el("td", "(others)", "s3"), o.requests, o.errors, ago(o.last_seen)]));
    }
    tb.replaceChildren(...rows);
  }

  function matches(r) {
    const tenant = $("f-tenant").value.trim().toLowerCase();
    const status = $("f-status").value;
    const path = $("f-path").value.trim();
    if (tenant && !(r.tenant || "").toLowerCase().includes(tenant)) return false;
    if (status === "err" && r.status < 400) return false;
    if (status && status !== "err" && String(r.status)[0] !== status) return false;
    if (path && !r.target.includes(path)) return false;
    return true;
  }

  function requestRow(r) {
    const tr = row([
      new Date(r.time).toLocaleTimeString(), r.method, r.host, r.tenant || "–",
      el("td", r.target, "path"), r.route,
      el("td", r.status + (r.complete ? "" : " (cut)"), "s" + String(r.status)[0]),
      r.ms, r.upstream || "–", r.bytes,
    ]);
    tr.dataset.id = r.id;
    if (picked && picked.id === r.id) tr.className = "picked";
    tr.addEventListener("click", () => show(r));
    return tr;
  }

  function render() {
    const body = $("requests").tBodies[0];
    const shown = requests.filter(matches).reverse();
    body.replaceChildren(...shown.map(requestRow));
  }

  function add(r) {
    // The stream may repeat what state.json already had.
    if (requests.length && r.id <= requests[requests.length - 1].id) return;
    requests.push(r);
    while (requests.length > size) requests.shift();
    if ($("f-pause").checked) return;
    if (matches(r)) {
      const body = $("requests").tBodies[0];
      body.insertBefore(requestRow(r), body.firstChild);
      while (body.rows.length > size) body.deleteRow(body.rows.length - 1);
    }
  }

  function headers(id, list) {
    $(id).tBodies[0].replaceChildren(...list.map(([n, v]) => row([n, v])));
  }

  function body(id, kept) {
    const shown = !!kept;
    $(id).hidden = !shown;
    $(id + "-title").hidden = !shown;
    if (!shown) return;
    let text = kept.binary ? "(" + kept.bytes + " bytes, not text)" : kept.text;
    if (kept.cut) text += "\n… (" + kept.bytes + " bytes in all; the first ones shown)";
    if (!kept.binary && kept.bytes === 0) text = "(empty)";
    $(id).textContent = text;
  }

  function show(r) {
    picked = r;
    $("d-replay-result").hidden = true;
    $("d-replay").disabled = !!r.replay_blocked;
    $("d-replay").title = r.replay_blocked ? "Cannot replay: " + r.replay_blocked
      : "Send this request again through portero";
    body("d-req-body", r.request_body);
    body("d-resp-body", r.response_body);
    $("d-title").textContent = r.method + " " + r.scheme + "://" + r.host + r.target + " → " + r.status;
    $("d-error").hidden = !r.error;
    $("d-error").textContent = r.error ? r.fault + " fault: " + r.error : "";
    $("d-error").className = "bad";
    $("d-curl-text").textContent = r.curl;
    headers("d-req", r.request_headers);
    headers("d-resp", r.response_headers);
    $("detail").hidden = false;
    for (const tr of $("requests").tBodies[0].rows) {
      tr.className = tr.dataset.id === String(r.id) ? "picked" : "";
    }
  }

  function copyCurl() {
    if (!picked) return;
    const text = picked.curl;
    const done = () => { $("d-curl").textContent = "Copied"; setTimeout(() => { $("d-curl").textContent = "Copy as curl"; }, 1200); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, fallback);
    } else {
      fallback();
    }
    function fallback() {
      // Plain http on another host is no secure context: select the text.
      const range = document.createRange();
      range.selectNodeContents($("d-curl-text"));
      const sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      try { document.execCommand("copy"); done(); } catch (_) { /* selected for ⌘C */ }
    }
  }

  async function replay() {
    if (!picked || picked.replay_blocked) return;
    const r = picked;
    $("d-replay").disabled = true;
    $("d-replay").textContent = "Replaying…";
    let out, status;
    try {
      const resp = await fetch("/__portero/replay/" + r.id, {
        method: "POST", headers: { "X-Portero-Replay": "1" }, cache: "no-store" });
      status = resp.status;
      const type = resp.headers.get("content-type") || "";
      out = type.startsWith("application/json") ? await resp.json() : { error: await resp.text() };
    } catch (e) {
      out = { error: String(e) };
    }
    $("d-replay").textContent = "Replay";
    $("d-replay").disabled = false;
    if (picked !== r) return;
    $("d-replay-result").hidden = false;
    const failed = out.error !== undefined;
    $("d-replay-error").hidden = !failed;
    $("d-replay-error").textContent = failed ? "Replay failed (" + status + "): " + out.error : "";
    $("d-replay-status").textContent = failed ? "–" : String(out.status);
    $("d-replay-status").className = failed ? "bad" : "s" + String(out.status)[0];
    $("d-replay-ms").textContent = failed ? "" : out.ms + " ms";
    headers("d-replay-headers", failed ? [] : out.headers);
    $("d-replay-body").textContent = failed ? "" :
      (out.body + (out.body_truncated ? "\n… (cut)" : "")) || "(empty body)";
  }

  function connect() {
    const es = new EventSource("/__portero/events");
    es.addEventListener("open", () => { $("live").textContent = "yes"; $("live").className = ""; });
    es.addEventListener("error", () => { $("live").textContent = "reconnecting…"; $("live").className = "bad"; });
    es.addEventListener("summary", (e) => summary(JSON.parse(e.data)));
    es.addEventListener("request", (e) => add(JSON.parse(e.data)));
    es.addEventListener("lagged", (e) => { $("live").textContent = "yes (skipped " + e.data + ")"; });
  }

  async function start() {
    for (const id of ["f-tenant", "f-status", "f-path", "f-pause"]) $(id).addEventListener("input", render);
    $("filters").addEventListener("submit", (e) => e.preventDefault());
    $("d-close").addEventListener("click", () => { $("detail").hidden = true; picked = null; render(); });
    $("d-curl").addEventListener("click", copyCurl);
    $("d-replay").addEventListener("click", replay);
    try {
      const state = await (await fetch("/__portero/state.json", { cache: "no-store" })).json();
      summary(state.summary);
      requests = state.requests;
      render();
    } catch (e) {
      $("live").textContent = "could not load state: " + e;
    }
    connect();
    // "x s ago" stays true between summaries.
    setInterval(() => { if (!$("f-pause").checked) render(); }, 10000);
  }
  start();
})();
