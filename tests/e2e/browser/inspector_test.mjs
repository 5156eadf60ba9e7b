// Browser test of portero's own page, /__portero/ (issue #15): Chromium
// opens it once and, without a reload, watches traffic that node sends
// through portero to the real Django + django-tenants + Channels backend.
//
// - the page and everything it loads come from portero's own origin (no
//   CDN: it works offline);
// - live traffic by tenant: the tenants table counts requests of `acme` and
//   `globex` as they happen, and each request arrives as a row of the
//   requests table (Server-Sent Events) with method, tenant, path, status;
// - the tenant and status filters narrow the rows;
// - a click on a row opens the detail with request and response headers,
//   and a Cookie and an Authorization header sent show as `[masked]`;
// - "Copy as curl": the command the page shows (and puts on the clipboard),
//   run as it is by the real curl, gets the status the original request got;
// - bodies and "Replay" (run.sh turns on [admin] inspector_bodies = "4KiB"):
//   a JSON POST shows its body and the answer's; replayed, it reaches Django
//   byte for byte with the same status, shown beside the old answer, and is
//   a new row; a body larger than 4 KiB cannot be replayed (the button is
//   disabled and says why); POST /__portero/replay/<id> needs
//   X-Portero-Replay (403 without) and answers JSON;
// - an open Channels WebSocket is listed in #tunnels with its bytes each way
//   and is gone once closed; a handshake Channels refuses for its Origin is
//   in #refused with status, Origin and the reason;
// - screenshots of the page with that traffic: out/inspector.png, and with
//   the detail of the replayed POST: inspector-detail.png.
//
// Env (exported by tests/e2e/run.sh):
//   E2E_PORTERO_PORT  port portero listens on (127.0.0.1)
//   E2E_OUT           output folder (screenshot, console log)
//   CHROMIUM_BIN      default /usr/bin/chromium
import { chromium } from "playwright-core";
import { assert, harness, pollAsync, required } from "./lib.mjs";
import { execFile } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";

const WHO = "inspector_test";
const { log, check, run } = harness("inspector");
const PORT = required(WHO, "E2E_PORTERO_PORT");
const OUT = process.env.E2E_OUT || path.resolve("out");
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
// The page is opened on loopback ([admin] allow), as a developer would.
const ORIGIN = `http://127.0.0.1:${PORT}`;
const PAGE = `${ORIGIN}/__portero/`;
const TENANTS = ["acme", "globex"];
// Marks this run's requests (in the query string), so rows left in the
// inspector by the tests before this one are told apart.
const NONCE = `i${Date.now().toString(36)}`;
const LIVE_MS = 10_000;   // a request's row, or a summary (every 2 s), to show
const BODIES = 4096;      // [admin] inspector_bodies in run.sh's config

const consoleLines = [];

// ------------------------------------------------------------------ node ---

// One request through portero, as a client of `tenant` would send it.
function send(tenant, method, target, headers = {}, body = null) {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: "127.0.0.1", port: PORT, method, path: target, agent: false,
      headers: { Host: `${tenant}.localhost:${PORT}`, ...headers },
    }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`${method} ${target} for ${tenant}: no answer in 10 s`)));
    req.on("error", reject);
    req.end(body ?? undefined);
  });
}

async function sendExpect(status, tenant, method, target, headers = {}, body = null) {
  const r = await send(tenant, method, target, headers, body);
  assert(r.status === status, `${method} ${target} for ${tenant}: status ${r.status}, expected ${status}: ${r.body.slice(0, 300)}`);
  return r;
}

// A shell command line, run by sh; stdout and the exit code.
function shell(cmd, timeoutMs = 15_000) {
  return new Promise((resolve) => {
    execFile("sh", ["-c", cmd], { timeout: timeoutMs, encoding: "utf8" }, (err, stdout, stderr) =>
      resolve({ code: err ? (err.code ?? "killed") : 0, stdout, stderr }));
  });
}

// A WebSocket client on a raw socket, so the handshake carries exactly the
// Host and Origin given. Resolves {status} for a refused handshake, or
// {status: 101, ws} with ws.next() (the next frame) and ws.close().
function wsConnect(tenant, origin, target = "/ws/echo/") {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: "127.0.0.1", port: PORT, path: target, agent: false,
      headers: {
        Host: `${tenant}.localhost:${PORT}`, Origin: origin, Connection: "Upgrade", Upgrade: "websocket",
        "Sec-WebSocket-Key": crypto.randomBytes(16).toString("base64"), "Sec-WebSocket-Version": "13",
      },
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`WebSocket ${target} for ${tenant}: no answer in 10 s`)));
    req.on("upgrade", (res, socket, head) => { req.setTimeout(0); resolve({ status: res.statusCode, ws: new Ws(socket, head) }); });
    req.on("response", (res) => { res.resume(); resolve({ status: res.statusCode }); });
    req.on("error", reject);
    req.end();
  });
}

class Ws {
  constructor(socket, head) {
    this.socket = socket;
    this.buf = Buffer.from(head || []);
    // Bytes on the wire after the handshake, each way.
    this.received = this.buf.length;
    this.sent = 0;
    this.frames = [];
    this.closed = false;
    this.wakers = [];
    socket.on("data", (d) => { this.received += d.length; this.buf = Buffer.concat([this.buf, d]); this.parse(); });
    socket.on("close", () => { this.closed = true; this.wake(); });
    socket.on("error", () => {});
    this.parse();
  }
  parse() {
    for (;;) {
      const b = this.buf;
      if (b.length < 2) break;
      let len = b[1] & 0x7f, off = 2;
      if (len === 126) { if (b.length < 4) break; len = b.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (b.length < 10) break; len = Number(b.readBigUInt64BE(2)); off = 10; }
      if (b[1] & 0x80) off += 4;   // a server's frames are not masked, but be lenient
      if (b.length < off + len) break;
      this.frames.push({ opcode: b[0] & 0x0f, data: b.subarray(off, off + len) });
      this.buf = b.subarray(off + len);
    }
    this.wake();
  }
  wake() { for (const w of this.wakers.splice(0)) w(); }
  // Waits for the next frame (or the socket's end), at most `ms`.
  async next(ms = 10_000) {
    const deadline = Date.now() + ms;
    while (!this.frames.length) {
      if (this.closed) throw new Error("the WebSocket closed");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no WebSocket frame within ${ms} ms`);
      await new Promise((r) => { this.wakers.push(r); setTimeout(r, Math.min(left, 1000)); });
    }
    return this.frames.shift();
  }
  send(opcode, payload) {
    assert(payload.length < 126, "short frames only");
    const mask = crypto.randomBytes(4);
    const masked = Buffer.from(payload.map((x, i) => x ^ mask[i % 4]));
    const frame = Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | payload.length]), mask, masked]);
    this.sent += frame.length;
    this.socket.write(frame);
  }
  sendText(text) { this.send(1, Buffer.from(text, "utf8")); }
  async nextJson() {
    const f = await this.next();
    assert(f.opcode === 1, `expected a text frame, got opcode ${f.opcode}`);
    return JSON.parse(f.data.toString("utf8"));
  }
  // A clean close: close frame 1000, the server's close frame, the end.
  async close() {
    this.send(8, Buffer.from([0x03, 0xe8]));
    for (;;) {
      const f = await this.next().catch(() => null);
      if (!f || f.opcode === 8) break;
    }
    this.socket.end();
    const deadline = Date.now() + 10_000;
    while (!this.closed && Date.now() < deadline) {
      await new Promise((r) => { this.wakers.push(r); setTimeout(r, 1000); });
    }
    assert(this.closed, "the WebSocket's TCP connection did not close within 10 s");
  }
}

const sha256 = (text) => crypto.createHash("sha256").update(text, "utf8").digest("hex");

// ------------------------------------------------------------------ page ---

// A table of the page as objects keyed by its column headings (so a column
// added to the page does not shift the checks); `_id` is the row's data-id.
// Runs in the page.
function readTable(selector) {
  const t = document.querySelector(selector);
  if (!t || !t.tHead || !t.tBodies[0]) return null;
  const heads = [...t.tHead.rows[0].cells].map((c) => c.textContent.trim());
  return [...t.tBodies[0].rows].map((tr) => {
    const o = { _id: tr.dataset.id ?? null };
    [...tr.cells].forEach((c, i) => { o[heads[i] ?? `col${i}`] = c.textContent.trim(); });
    return o;
  });
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "portero-e2e-chromium-inspector-"));
  log(`chromium ${CHROMIUM}, profile ${userDataDir}, page ${PAGE}, run marker ${NONCE}`);
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    viewport: { width: 1400, height: 900 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  // Every request any page of this browser makes (the page's own files, its
  // state.json and event stream, whatever else it would fetch).
  const requested = [];
  context.on("request", (r) => requested.push(r.url()));
  let navigations = 0;
  try {
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: ORIGIN });
    const page = context.pages()[0] || (await context.newPage());
    page.on("console", (m) => consoleLines.push(`[console.${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => consoleLines.push(`[pageerror] ${e.message}`));
    page.on("requestfailed", (r) => consoleLines.push(`[requestfailed] ${r.url()} ${r.failure()?.errorText}`));
    page.on("websocket", (w) => requested.push(w.url()));
    page.on("framenavigated", (f) => {
      if (f === page.mainFrame()) {
        navigations += 1;
        consoleLines.push(`[navigated #${navigations}] ${f.url()}`);
      }
    });
    const table = (sel) => page.evaluate(readTable, sel);
    // This run's rows of the requests table, newest first.
    const mine = async () => (await table("#requests")).filter((r) => r.path.includes(NONCE));
    let lastSeen;
    const waitRows = (what, pred, ms = LIVE_MS) =>
      pollAsync(async () => { lastSeen = await mine(); return pred(lastSeen) && lastSeen; }, ms, what, () => lastSeen);

    const loaded = await check("page_loads_from_portero_only", async () => {
      const resp = await page.goto(PAGE, { waitUntil: "load", timeout: 20_000 });
      assert(resp && resp.status() === 200, `GET ${PAGE} status ${resp && resp.status()}`);
      const csp = resp.headers()["content-security-policy"] || "";
      assert(/default-src 'none'/.test(csp), `CSP of the page: ${JSON.stringify(csp)}`);
      // Live: the event stream is open and the first summary has been shown.
      await pollAsync(() => page.evaluate(() => document.getElementById("live").textContent === "yes"
          && document.getElementById("version").textContent !== ""),
        LIVE_MS, "#live to say \"yes\" and #version to be filled");
      // The header names the address bound (run.sh listens on port 0).
      const listeners = await page.textContent("#listeners");
      assert(listeners.split(", ").includes(`http://127.0.0.1:${PORT}`), `#listeners: ${JSON.stringify(listeners)}`);
      const note = await page.textContent("#inspector-note");
      assert(/credentials masked/.test(note) && note.includes(`first ${BODIES} bytes of bodies`),
        `#inspector-note: ${JSON.stringify(note)}`);
      const foreign = requested.filter((u) => new URL(u).origin !== ORIGIN);
      assert(foreign.length === 0, `requests to other origins: ${JSON.stringify(foreign)}`);
      const own = requested.map((u) => new URL(u).pathname);
      for (const p of ["/__portero/", "/__portero/inspector.js", "/__portero/inspector.css",
                       "/__portero/state.json", "/__portero/events"]) {
        assert(own.includes(p), `the page did not request ${p}; it requested ${JSON.stringify(own)}`);
      }
      log(`page loaded; requests so far: ${JSON.stringify(own)}`);
      await page.evaluate(() => { window.__marker = "loaded-once"; });
    });
    if (!loaded) return;

    // The tenants table's row for `name`, as numbers.
    const tenantRow = async (name) => {
      const r = (await table("#tenants")).find((t) => t.tenant === name);
      return r ? { requests: Number(r.requests), errors: Number(r["4xx + 5xx"]) } : { requests: 0, errors: 0 };
    };
    let tenantsSeen;
    const waitTenants = (what, pred) => pollAsync(async () => {
      tenantsSeen = await table("#tenants");
      const now = Object.fromEntries(await Promise.all(TENANTS.map(async (t) => [t, await tenantRow(t)])));
      return pred(now) && now;
    }, LIVE_MS, what, () => tenantsSeen);

    // What each request of this run was: target -> {tenant, method, status}.
    const sent = new Map();
    const burst = async (round) => {
      const list = [
        ["acme", "GET", `/api/whoami/?${NONCE}=${round}a1`, 200],
        ["acme", "GET", `/api/whoami/?${NONCE}=${round}a2`, 200],
        ["globex", "GET", `/api/whoami/?${NONCE}=${round}g1`, 200],
        ["globex", "GET", `/api/missing-${NONCE}-${round}/`, 404],
      ];
      for (const [tenant, method, target, status] of list) {
        const r = await sendExpect(status, tenant, method, target);
        if (status === 200) {
          const who = JSON.parse(r.body);
          assert(who.tenant === tenant, `${target} for ${tenant} reached tenant ${who.tenant}`);
        }
        sent.set(target, { tenant, method, status });
      }
      return list.length;
    };
    const rowsMatchSent = (rows) => [...sent].every(([target, s]) => rows.some((r) =>
      r.path === target && r.method === s.method && r.tenant === s.tenant && r.status === String(s.status)));

    await check("live_traffic_by_tenant", async () => {
      const before = Object.fromEntries(await Promise.all(TENANTS.map(async (t) => [t, await tenantRow(t)])));
      log(`tenants before: ${JSON.stringify(before)}`);
      assert((await mine()).length === 0, "rows of this run before any request was sent");
      const navBefore = navigations;
      for (const round of [1, 2]) {
        await burst(round);
        // acme: 2 per round; globex: 2 per round, 1 of them a 404.
        const rows = await waitRows(`round ${round}: a row per request sent (${sent.size})`, rowsMatchSent);
        const grown = await waitTenants(`round ${round}: the tenants table to count the requests`, (now) =>
          now.acme.requests >= before.acme.requests + 2 * round
          && now.globex.requests >= before.globex.requests + 2 * round
          && now.globex.errors >= before.globex.errors + round);
        log(`round ${round}: ${rows.length} rows of this run; tenants ${JSON.stringify(grown)}`);
      }
      const rows = await mine();
      assert(rows.length === sent.size, `rows of this run: ${rows.length}, requests sent: ${sent.size}: ${JSON.stringify(rows)}`);
      // Newest first: the last request sent is the top row.
      assert(rows[0].path === `/api/missing-${NONCE}-2/`, `top row: ${JSON.stringify(rows[0])}`);
      assert(rows.every((r) => r._id && /^\d+$/.test(r._id)), `rows without data-id: ${JSON.stringify(rows)}`);
      const marker = await page.evaluate(() => window.__marker);
      assert(marker === "loaded-once" && navigations === navBefore,
        `the page was reloaded (marker ${JSON.stringify(marker)}, ${navigations - navBefore} navigations): rows must arrive live`);
    });

    await check("filters_narrow_rows", async () => {
      await page.fill("#f-tenant", "globex");
      let rows = await waitRows("the tenant filter (globex) to leave globex rows only", (rs) =>
        rs.length === 4 && rs.every((r) => r.tenant === "globex"));
      const all = await table("#requests");
      assert(all.every((r) => r.tenant.includes("globex")), `rows of other tenants under filter globex: ${JSON.stringify(all.filter((r) => !r.tenant.includes("globex")))}`);
      await page.selectOption("#f-status", "4");
      rows = await waitRows("tenant globex + status 4xx to leave the two 404s", (rs) =>
        rs.length === 2 && rs.every((r) => r.status === "404" && r.tenant === "globex"));
      const all4 = await table("#requests");
      assert(all4.every((r) => r.status.startsWith("4") && r.tenant.includes("globex")), `rows under globex + 4xx: ${JSON.stringify(all4)}`);
      await page.selectOption("#f-status", "2");
      await waitRows("tenant globex + 2xx to leave the two 200s", (rs) =>
        rs.length === 2 && rs.every((r) => r.status === "200" && r.tenant === "globex"));
      await page.selectOption("#f-status", "");
      await page.fill("#f-tenant", "");
      await waitRows("all rows of this run back without filters", (rs) => rs.length === sent.size);
      log(`filters: globex -> 4 rows, globex+4xx -> ${rows.map((r) => r.path).join(", ")}`);
    });

    // Clicks the row `id` where a user can: at its left end, which the
    // detail panel (fixed on the right) leaves visible while it is open.
    const clickRow = async (id, target) => {
      await page.click(`#requests tbody tr[data-id="${id}"]`, { position: { x: 8, y: 6 } });
      await pollAsync(() => page.evaluate(([i, t]) => !document.getElementById("detail").hidden
          && document.getElementById("d-title").textContent.includes(t)
          && document.querySelector(`#requests tbody tr[data-id="${i}"]`)?.className === "picked", [id, target]),
        5_000, `#detail to show ${target} (row ${id} picked)`);
    };
    // The newest row of `target`, opened in the detail.
    const openRow = async (target) => {
      const row = await waitRows(`the row of ${target}`, (rs) => rs.some((r) => r.path === target));
      const id = row.find((r) => r.path === target)._id;
      await clickRow(id, target);
      const detail = await page.evaluate((sel) => ({
        title: document.getElementById("d-title").textContent,
        req: [...document.querySelectorAll("#d-req tbody tr")].map((tr) => [...tr.cells].map((c) => c.textContent)),
        resp: [...document.querySelectorAll("#d-resp tbody tr")].map((tr) => [...tr.cells].map((c) => c.textContent)),
        text: document.querySelector(sel).textContent,
      }), "#detail");
      return { id, ...detail };
    };
    const header = (list, name) => list.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);

    await check("detail_shows_headers_with_credentials_masked", async () => {
      const target = `/api/whoami/?${NONCE}=secret`;
      const cookie = `sessionid=cookie-${NONCE}; csrftoken=csrf-${NONCE}`;
      const bearer = `Bearer token-${NONCE}`;
      await sendExpect(200, "acme", "GET", target, { Cookie: cookie, Authorization: bearer, "X-E2E-Note": "visible" });
      const d = await openRow(target);
      log(`detail of ${target}: ${d.title}; request headers ${JSON.stringify(d.req)}`);
      assert(d.title.includes(`acme.localhost:${PORT}${target}`) && d.title.includes("200"), `#d-title: ${JSON.stringify(d.title)}`);
      assert(JSON.stringify(header(d.req, "cookie")) === '["[masked]"]', `Cookie shown as ${JSON.stringify(header(d.req, "cookie"))}`);
      assert(JSON.stringify(header(d.req, "authorization")) === '["[masked]"]', `Authorization shown as ${JSON.stringify(header(d.req, "authorization"))}`);
      assert(JSON.stringify(header(d.req, "x-e2e-note")) === '["visible"]', `X-E2E-Note shown as ${JSON.stringify(header(d.req, "x-e2e-note"))}`);
      assert(header(d.req, "host")[0] === `acme.localhost:${PORT}`, `Host shown as ${JSON.stringify(header(d.req, "host"))}`);
      assert(/^application\/json/.test(header(d.resp, "content-type")[0] || ""), `response headers: ${JSON.stringify(d.resp)}`);
      const leaked = [`cookie-${NONCE}`, `csrf-${NONCE}`, `token-${NONCE}`].filter((s) => d.text.includes(s));
      assert(leaked.length === 0, `secret values visible in #detail: ${JSON.stringify(leaked)}`);
      const curlText = await page.textContent("#d-curl-text");
      assert(curlText.includes("-H 'cookie: [masked]'") && curlText.includes("-H 'authorization: [masked]'"),
        `curl command without the masked headers: ${curlText}`);
    });

    // The detail's curl command for `target`, after a click on "Copy as curl".
    const copyCurl = async (target) => {
      const d = await openRow(target);
      await page.click("#d-curl");
      const cmd = await pollAsync(() => page.evaluate(() => document.getElementById("d-curl-text").textContent),
        5_000, "#d-curl-text to be filled");
      await pollAsync(() => page.evaluate(() => document.getElementById("d-curl").textContent === "Copied"),
        5_000, "the button to say Copied");
      const clip = await page.evaluate(() => navigator.clipboard.readText());
      assert(clip === cmd, `clipboard ${JSON.stringify(clip)} differs from #d-curl-text ${JSON.stringify(cmd)}`);
      return { cmd, id: d.id };
    };

    await check("copy_as_curl_runs_in_real_curl", async () => {
      const cases = [
        // tenant, target, extra headers, status
        ["acme", `/api/whoami/?${NONCE}=curl&q=a+b`, { "X-E2E-Note": `it's "quoted" $HOME` }, 200],
        ["globex", `/api/missing-${NONCE}-curl/`, {}, 404],
      ];
      for (const [tenant, target, headers, status] of cases) {
        await sendExpect(status, tenant, "GET", target, headers);
        const { cmd } = await copyCurl(target);
        log(`copied for ${tenant} ${target}: ${cmd}`);
        assert(cmd.startsWith("curl ") && cmd.includes(`'http://${tenant}.localhost:${PORT}${target}'`),
          `curl command: ${cmd}`);
        assert(!cmd.includes("[masked]"), `a masked header in a command that should be complete: ${cmd}`);
        const body = path.join(OUT, `inspector-curl-${tenant}.body`);
        // The command exactly as copied; the added flags only say where
        // the answer goes.
        const r = await shell(`${cmd} -sS -o '${body}' -w '%{http_code}'`);
        assert(r.code === 0, `curl exit ${r.code}: ${r.stderr}`);
        assert(r.stdout === String(status), `curl got ${r.stdout}, the original request ${status}`);
        const answer = fs.readFileSync(body, "utf8");
        fs.rmSync(body, { force: true });
        if (status === 200) {
          const who = JSON.parse(answer);
          assert(who.tenant === tenant && who.host === `${tenant}.chalanpro.net`, `curl reached ${JSON.stringify(who)}`);
        }
        // curl's request is new traffic: one more row with that path.
        await waitRows(`curl's own request for ${target} as a second row`, (rs) =>
          rs.filter((x) => x.path === target && x.status === String(status) && x.tenant === tenant).length === 2);
      }
    });

    // The detail's bodies, replay button and replay result, as shown.
    const detailBodies = () => page.evaluate(() => {
      const $ = (id) => document.getElementById(id);
      const shown = (id) => !$(id).hidden && $(id).getClientRects().length > 0;
      return {
        reqBody: shown("d-req-body") ? $("d-req-body").textContent : null,
        respBody: shown("d-resp-body") ? $("d-resp-body").textContent : null,
        replayDisabled: $("d-replay").disabled,
        replayTitle: $("d-replay").title,
        result: shown("d-replay-result") ? {
          status: $("d-replay-status").textContent,
          error: $("d-replay-error").hidden ? null : $("d-replay-error").textContent,
          headers: [...$("d-replay-headers").querySelectorAll("tbody tr")].map((tr) => [...tr.cells].map((c) => c.textContent)),
          body: $("d-replay-body").textContent,
        } : null,
      };
    });
    // The POST replayed in the page, for the screenshot of its detail.
    const replayTarget = `/api/upload/?${NONCE}=replay`;
    let replaySent = { bytes: -1, sha256: "(the POST was not sent)" };

    await check("replay_post_with_json_body", async () => {
      const json = JSON.stringify({ e2e: NONCE, items: [1, 2, 3], note: "héllo, replay" });
      const bytes = Buffer.byteLength(json);
      replaySent = { bytes, sha256: sha256(json) };
      // A Cookie too: the page masks it, the replay sends it as received.
      const orig = await sendExpect(200, "acme", "POST", replayTarget,
        { "Content-Type": "application/json", Cookie: `sessionid=replay-${NONCE}` }, json);
      const up = JSON.parse(orig.body);
      assert(up.bytes === bytes && up.sha256 === sha256(json), `Django counted ${JSON.stringify(up)} for ${bytes} bytes`);
      const d = await openRow(replayTarget);
      assert(JSON.stringify(header(d.req, "cookie")) === '["[masked]"]', `Cookie shown as ${JSON.stringify(header(d.req, "cookie"))}`);
      let b = await detailBodies();
      assert(b.reqBody === json, `#d-req-body ${JSON.stringify(b.reqBody)}, sent ${JSON.stringify(json)}`);
      assert(b.respBody === orig.body, `#d-resp-body ${JSON.stringify(b.respBody)}, Django answered ${JSON.stringify(orig.body)}`);
      assert(!b.replayDisabled, `#d-replay is disabled: ${JSON.stringify(b.replayTitle)}`);
      assert(b.result === null, "#d-replay-result shown before a replay");
      await page.click("#d-replay");
      b = await pollAsync(async () => { const x = await detailBodies(); return x.result && x.result.status !== "" && x; },
        LIVE_MS, "#d-replay-result with #d-replay-status", () => null);
      log(`replayed ${replayTarget}: ${JSON.stringify(b.result)}`);
      assert(b.result.error === null, `replay failed: ${b.result.error}`);
      assert(b.result.status === String(orig.status), `#d-replay-status ${JSON.stringify(b.result.status)}, original ${orig.status}`);
      const again = JSON.parse(b.result.body);
      assert(again.bytes === bytes && again.sha256 === up.sha256,
        `the replay reached Django as ${JSON.stringify(again)}, not the ${bytes} bytes sent first`);
      assert(/^application\/json/.test(header(b.result.headers, "content-type")[0] || ""),
        `replayed response headers: ${JSON.stringify(b.result.headers)}`);
      assert(b.respBody === orig.body, "the old response body is no longer shown beside the replay");
      const rows = await waitRows(`the replay of ${replayTarget} as a new row`, (rs) =>
        rs.filter((r) => r.path === replayTarget && r.method === "POST" && r.tenant === "acme" && r.status === "200").length === 2);
      assert(rows[0].path === replayTarget && rows[0]._id !== d.id, `newest row: ${JSON.stringify(rows[0])} (original id ${d.id})`);
    });

    await check("replay_refused_for_a_body_cut_short", async () => {
      const target = `/api/upload/?${NONCE}=big`;
      const big = "x".repeat(BODIES * 2 + 100);
      await sendExpect(200, "acme", "POST", target, { "Content-Type": "text/plain" }, big);
      await openRow(target);
      const b = await detailBodies();
      log(`body of ${big.length} bytes: replay disabled ${b.replayDisabled}, title ${JSON.stringify(b.replayTitle)}`);
      assert(b.replayDisabled, "#d-replay is enabled for a body larger than inspector_bodies");
      assert(/body/i.test(b.replayTitle) && /inspector_bodies/.test(b.replayTitle), `#d-replay title: ${JSON.stringify(b.replayTitle)}`);
      assert(b.reqBody && b.reqBody.startsWith("x".repeat(BODIES)) && b.reqBody.includes(String(big.length)),
        `#d-req-body of the cut body: ${JSON.stringify(b.reqBody && b.reqBody.slice(-120))}`);
    });

    await check("replay_endpoint_needs_its_header", async () => {
      const row = (await mine()).find((r) => r.path === replayTarget);
      assert(row, `no row of ${replayTarget}`);
      const ep = (headers) => new Promise((resolve, reject) => {
        const req = http.request({ host: "127.0.0.1", port: PORT, method: "POST", path: `/__portero/replay/${row._id}`,
          agent: false, headers: { Host: `127.0.0.1:${PORT}`, "Content-Length": "0", ...headers } }, (res) => {
          const chunks = [];
          res.on("data", (c) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode, type: res.headers["content-type"] || "", body: Buffer.concat(chunks).toString("utf8") }));
        });
        req.on("error", reject);
        req.end();
      });
      const before = (await mine()).filter((r) => r.path === replayTarget).length;
      const no = await ep({});
      assert(no.status === 403, `without X-Portero-Replay: ${no.status} ${no.body}`);
      const foreign = await ep({ "X-Portero-Replay": "1", Origin: "http://evil.example" });
      assert(foreign.status === 403, `with a foreign Origin: ${foreign.status} ${foreign.body}`);
      const ok = await ep({ "X-Portero-Replay": "1" });
      assert(ok.status === 200 && ok.type.startsWith("application/json"), `with X-Portero-Replay: ${ok.status} ${ok.type} ${ok.body}`);
      const out = JSON.parse(ok.body);
      assert(out.status === 200 && typeof out.ms === "number" && out.body_truncated === false
        && Array.isArray(out.headers) && out.headers.every((h) => Array.isArray(h) && h.length === 2),
        `replay answer: ${ok.body}`);
      const counted = JSON.parse(out.body);
      assert(counted.bytes === replaySent.bytes && counted.sha256 === replaySent.sha256,
        `the replay reached Django as ${out.body}, not as ${JSON.stringify(replaySent)}`);
      await waitRows("the endpoint's replay as one more row (and the refused ones as none)", (rs) =>
        rs.filter((r) => r.path === replayTarget).length === before + 1);
    });

    const echoTunnels = async () => (await table("#tunnels")).filter((t) => t["host and path"].endsWith("/ws/echo/"));
    let tunnelsSeen;
    const waitTunnels = (what, pred) => pollAsync(async () => {
      tunnelsSeen = await echoTunnels();
      return pred(tunnelsSeen) && tunnelsSeen;
    }, LIVE_MS, what, () => tunnelsSeen);
    const sameOrigin = (tenant) => `http://${tenant}.localhost:${PORT}`;

    await check("tunnel_listed_while_open", async () => {
      await waitTunnels("no Channels tunnel open before the test's own", (ts) => ts.length === 0);
      const { status, ws } = await wsConnect("acme", sameOrigin("acme"));
      assert(status === 101 && ws, `handshake status ${status}`);
      try {
        const hello = await ws.nextJson();
        assert(hello.type === "hello" && hello.tenant === "acme", `hello: ${JSON.stringify(hello)}`);
        ws.sendText(`ping ${NONCE}`);
        const echo = await ws.nextJson();
        assert(echo.type === "echo" && echo.data === `ping ${NONCE}`, `echo: ${JSON.stringify(echo)}`);
        // Exactly what passed: up, the ping frame; down, the hello (which
        // Daphne sends right behind the 101) and the echo.
        const want = { up: ws.sent, down: ws.received };
        const ts = await waitTunnels(`the open tunnel with ${want.up} bytes up and ${want.down} down (what the client sent and got)`,
          (xs) => xs.length === 1 && Number(xs[0]["bytes up"]) === want.up && Number(xs[0]["bytes down"]) === want.down);
        log(`open tunnel: ${JSON.stringify(ts[0])}`);
        assert(ts[0].tenant === "acme" && ts[0]["host and path"] === `acme.localhost:${PORT}/ws/echo/`, `tunnel row: ${JSON.stringify(ts[0])}`);
        assert(/\d+s$/.test(ts[0]["open for"]), `open for: ${JSON.stringify(ts[0]["open for"])}`);
      } finally {
        await ws.close();
      }
      await waitTunnels("the tunnel to be gone once closed", (xs) => xs.length === 0);
    });

    await check("refused_handshake_explained", async () => {
      const origin = `http://evil-${NONCE}.example`;
      const { status } = await wsConnect("acme", origin);
      assert(status === 403, `handshake with Origin ${origin}: ${status}, expected Channels' 403`);
      let seen;
      const rows = await pollAsync(async () => {
        seen = await table("#refused");
        const found = seen.filter((r) => r.Origin === origin);
        return found.length > 0 && found;
      }, LIVE_MS, `a #refused row with Origin ${origin}`, () => seen);
      const r = rows[0];
      log(`refused: ${JSON.stringify(r)}`);
      assert(rows.length === 1, `rows with Origin ${origin}: ${JSON.stringify(rows)}`);
      assert(r.status === "403" && r.tenant === "acme" && r.host === `acme.localhost:${PORT}` && r.path === "/ws/echo/",
        `refused row: ${JSON.stringify(r)}`);
      assert(/origin/i.test(r.why) && /AllowedHostsOriginValidator/.test(r.why) && /ALLOWED_HOSTS/.test(r.why),
        `the reason does not name the origin check: ${JSON.stringify(r.why)}`);
      assert(/ago$/.test(r.time), `time: ${JSON.stringify(r.time)}`);
    });

    await check("screenshots", async () => {
      // The page with this run's traffic, a tunnel open and the refused
      // handshake; then the detail of the replayed POST with its replay.
      const { status, ws } = await wsConnect("globex", sameOrigin("globex"));
      assert(status === 101 && ws, `handshake status ${status}`);
      try {
        await ws.nextJson();
        await waitTunnels("globex's tunnel for the screenshot", (xs) => xs.length === 1);
        await page.click("#d-close");
        await pollAsync(() => page.evaluate(() => document.getElementById("detail").hidden), 5_000, "#detail to close");
        const shot = path.join(OUT, "inspector.png");
        await page.screenshot({ path: shot, fullPage: true });
        assert(fs.statSync(shot).size > 10_000, `${shot} is suspiciously small`);
        log(`screenshot: ${shot}`);
      } finally {
        await ws.close();
      }
      const first = (await mine()).filter((r) => r.path === replayTarget).at(-1);
      await clickRow(first._id, replayTarget);
      await page.click("#d-replay");
      await pollAsync(async () => (await detailBodies()).result?.status === "200", LIVE_MS, "the replay result");
      const shot = path.join(OUT, "inspector-detail.png");
      await page.screenshot({ path: shot, fullPage: true });
      assert(fs.statSync(shot).size > 10_000, `${shot} is suspiciously small`);
      log(`screenshot: ${shot}`);
    });

    await check("no_request_left_portero", async () => {
      const foreign = requested.filter((u) => new URL(u).origin !== ORIGIN);
      assert(foreign.length === 0, `requests to other origins: ${JSON.stringify(foreign)}`);
      const kinds = [...new Set(requested.map((u) => new URL(u).pathname))];
      log(`${requested.length} requests by the browser, all to ${ORIGIN}: ${JSON.stringify(kinds)}`);
    });
  } finally {
    fs.writeFileSync(path.join(OUT, "inspector-console.log"), consoleLines.join("\n") + "\n");
    await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

await run(main, {
  timeoutMs: 120_000,
  expected: 12,
});
