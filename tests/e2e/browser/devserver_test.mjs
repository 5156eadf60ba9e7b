// Browser test of portero in front of a real webpack-dev-server 5 (issue #18):
// portero started with flags only (--spa http://127.0.0.1:WDS --backend ...),
// so its default routes send exactly /ws to the dev server (HMR) and /ws/... to
// Django Channels. Checks the page, the API and the Channels echo through
// portero, that the HMR socket is ws://acme.localhost:PORT/ws (through portero,
// not straight to the dev server), that an edit of src/message.js is
// hot-replaced without a reload, and that the dev server saw its own Host.
//
// Env (exported by tests/e2e/run.sh):
//   E2E_DEVSERVER_PORTERO_PORT  port of the portero that fronts the dev server
//   E2E_DEVSERVER_PORT          the dev server's own port (127.0.0.1)
//   E2E_DEVSERVER_APP           the served COPY of tests/e2e/devserver/app (edited)
//   E2E_DEVSERVER_REQUEST_LOG   JSON lines: each request/upgrade the dev server got
//   E2E_OUT                     output folder (screenshot, console log)
//   CHROMIUM_BIN                default /usr/bin/chromium
import { chromium } from "playwright-core";
import { assert, harness, pollNode, pollPage, required } from "./lib.mjs";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const WHO = "devserver_test";
const { log, check, run } = harness("devserver");
const PORT = required(WHO, "E2E_DEVSERVER_PORTERO_PORT");
const WDS_PORT = required(WHO, "E2E_DEVSERVER_PORT");
const APP_DIR = required(WHO, "E2E_DEVSERVER_APP");
const REQUEST_LOG = required(WHO, "E2E_DEVSERVER_REQUEST_LOG");
const OUT = process.env.E2E_OUT || path.resolve("out");
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const ORIGIN = `http://acme.localhost:${PORT}`;
const HMR_URL = `ws://acme.localhost:${PORT}/ws`;
const HMR_TIMEOUT_MS = 15_000;


const consoleLines = [];





const pageState = () => ({
  title: document.getElementById("title")?.textContent,
  message: document.getElementById("message")?.textContent,
  tenant: document.getElementById("tenant")?.textContent,
  backendHost: document.getElementById("backend-host")?.textContent,
  wsStatus: document.getElementById("ws-status")?.textContent,
  wsTenant: document.getElementById("ws-tenant")?.textContent,
  echo: document.getElementById("echo")?.textContent,
  expectedEcho: window.__expectedEcho,
  hmrUpdates: window.__hmrUpdates ?? 0,
  marker: window.__marker ?? null,
  sockets: (window.__sockets || []).map((s) => ({ url: s.url, readyState: s.readyState })),
});

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "portero-e2e-chromium-"));
  log(`chromium ${CHROMIUM}, profile ${userDataDir}, page ${ORIGIN}/, dev server 127.0.0.1:${WDS_PORT}`);
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    viewport: { width: 1000, height: 700 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  let navigations = 0;
  // Every WebSocket the page opens, seen from the browser side (Playwright):
  // its URL and the text frames it received.
  const sockets = [];
  try {
    await context.addInitScript(() => {
      const Orig = window.WebSocket;
      window.__sockets = [];
      window.WebSocket = class extends Orig {
        constructor(...args) {
          super(...args);
          window.__sockets.push(this);
        }
      };
    });
    const page = context.pages()[0] || (await context.newPage());
    page.on("console", (m) => consoleLines.push(`[console.${m.type()}] ${m.text()}`));
    page.on("pageerror", (e) => consoleLines.push(`[pageerror] ${e.message}`));
    page.on("requestfailed", (r) => consoleLines.push(`[requestfailed] ${r.url()} ${r.failure()?.errorText}`));
    page.on("framenavigated", (f) => {
      if (f === page.mainFrame()) {
        navigations += 1;
        consoleLines.push(`[navigated #${navigations}] ${f.url()}`);
      }
    });
    // Hot-update files the page fetched, and from where.
    const hotUpdates = [];
    page.on("response", async (r) => {
      if (!/\.hot-update\.(json|js)$/.test(new URL(r.url()).pathname)) return;
      const addr = await r.serverAddr().catch(() => null);
      hotUpdates.push({ url: r.url(), status: r.status(), port: addr && String(addr.port) });
    });
    page.on("websocket", (ws) => {
      const s = { url: ws.url(), frames: [], closed: false };
      sockets.push(s);
      consoleLines.push(`[websocket] ${s.url}`);
      ws.on("framereceived", (f) => { if (typeof f.payload === "string") s.frames.push(f.payload); });
      ws.on("close", () => { s.closed = true; consoleLines.push(`[websocket closed] ${s.url}`); });
    });
    const hmrSocket = () => sockets.find((s) => s.url === HMR_URL);
    // The dev server's messages are {"type":"hash","data":...}, {"type":"ok"}, ...
    const hmrTypes = (s) => s.frames.map((f) => { try { return JSON.parse(f).type; } catch { return "?"; } });

    const loaded = await check("page_loads_through_portero", async () => {
      const resp = await page.goto(`${ORIGIN}/`, { waitUntil: "load", timeout: 30_000 });
      assert(resp && resp.status() === 200, `GET / status ${resp && resp.status()}`);
      const addr = await resp.serverAddr();
      assert(addr && String(addr.port) === PORT, `GET / answered by ${JSON.stringify(addr)}, not portero on port ${PORT}`);
      const served = await resp.text();
      const fixture = fs.readFileSync(path.join(APP_DIR, "public", "index.html"), "utf8");
      assert(served === fixture, `GET / is not the dev server's public/index.html: ${JSON.stringify(served)}`);
      const s = await pollPage(page, () => document.getElementById("message")?.textContent && {
        title: document.getElementById("title").textContent,
        message: document.getElementById("message").textContent,
      }, null, 10_000, "the bundle (/main.js) to render message.js");
      assert(s.title === "Portero E2E dev server", `unexpected heading ${JSON.stringify(s.title)}`);
      assert(s.message === "message v1", `unexpected message ${JSON.stringify(s.message)}`);
    });
    if (!loaded) return;

    await check("api_whoami_shows_tenant_acme", async () => {
      const s = await pollPage(page, () => {
        const t = document.getElementById("tenant")?.textContent;
        return t && t !== "loading..." ? { tenant: t, host: document.getElementById("backend-host").textContent } : null;
      }, null, 10_000, "the whoami result");
      assert(s.tenant === "acme", `tenant shown: ${JSON.stringify(s)}`);
      assert(s.host === "acme.chalanpro.net", `Host Django saw: ${JSON.stringify(s)}`);
    });

    await check("channels_websocket_echo", async () => {
      const s = await pollPage(page, () => {
        const st = document.getElementById("ws-status")?.textContent;
        const echo = document.getElementById("echo")?.textContent;
        if (echo || (st && st !== "connecting..." && st !== "open")) {
          return { st, echo, wsTenant: document.getElementById("ws-tenant").textContent, expected: window.__expectedEcho };
        }
        return null;
      }, null, 10_000, "the Channels echo on /ws/echo/");
      assert(s.wsTenant === "acme", `ws hello tenant: ${JSON.stringify(s)}`);
      assert(s.echo && s.echo === s.expected, `echo: ${JSON.stringify(s)}`);
    });

    const hmrOpen = await check("hmr_socket_open_through_portero", async () => {
      const st = await pollPage(page, (url) => (window.__sockets || []).some((s) => s.url === url && s.readyState === 1),
        HMR_URL, 10_000, `the HMR WebSocket ${HMR_URL} to be open`);
      assert(st, "no open HMR socket");
      // It is the dev server at the other end: it sent its build hash and "ok".
      const s = await pollNode(() => { const h = hmrSocket(); return h && hmrTypes(h).includes("ok") && h; },
        10_000, `the dev server's "ok" on ${HMR_URL}`);
      assert(hmrTypes(s).includes("hash"), `no "hash" message on the HMR socket: ${JSON.stringify(s.frames)}`);
      const urls = sockets.map((x) => x.url);
      assert(!urls.some((u) => u.includes(`:${WDS_PORT}`)), `a socket went straight to the dev server: ${JSON.stringify(urls)}`);
      const echoSock = urls.filter((u) => u === `ws://acme.localhost:${PORT}/ws/echo/`);
      assert(echoSock.length === 1, `expected one Channels socket through portero: ${JSON.stringify(urls)}`);
    });

    await check("hmr_update_without_reload", async () => {
      assert(hmrOpen, "the HMR socket was not open");
      const marker = `hmr-${Date.now()}`;
      await page.evaluate((m) => { window.__marker = m; }, marker);
      const navBefore = navigations;
      const h = hmrSocket();
      const hashesBefore = hmrTypes(h).filter((t) => t === "hash").length;
      const file = path.join(APP_DIR, "src", "message.js");
      const src = fs.readFileSync(file, "utf8");
      assert(src.includes('"message v1"'), "fixture text not found in the served copy of message.js");
      fs.writeFileSync(file, src.replace('"message v1"', '"message v2 (hot)"'));
      log(`rewrote ${file}`);
      await pollPage(page, () => document.getElementById("message")?.textContent === "message v2 (hot)",
        null, HMR_TIMEOUT_MS, "the new message text");
      const s = await page.evaluate(pageState);
      assert(s.marker === marker, `window.__marker is ${JSON.stringify(s.marker)}: the page was reloaded`);
      assert(navigations === navBefore, `main frame navigated ${navigations - navBefore} time(s) on an HMR update`);
      assert(s.hmrUpdates === 1, `module.hot.accept callback ran ${s.hmrUpdates} time(s)`);
      assert(hmrTypes(h).filter((t) => t === "hash").length > hashesBefore, "no new build hash on the HMR socket");
      assert(!h.closed, "the HMR socket closed");
      // The page was not re-run: the same Channels socket is still open.
      assert(s.wsStatus === "open" && s.echo === s.expectedEcho, `Channels socket after the update: ${JSON.stringify(s)}`);
      // The update itself (main.<hash>.hot-update.json, then .js) came through portero.
      const through = (ext) => {
        const got = hotUpdates.filter((u) => u.url.startsWith(`${ORIGIN}/`) && u.url.endsWith(ext));
        return got.length > 0 && got.every((u) => u.status === 200 && u.port === PORT);
      };
      await pollNode(() => through(".hot-update.json") && through(".hot-update.js"), 5_000,
        "main.<hash>.hot-update.json and .js, 200 from portero").catch((e) => {
        throw new Error(`${e.message}: ${JSON.stringify(hotUpdates)}`);
      });
    });

    await check("devserver_got_its_own_host", async () => {
      // What the dev server itself received: every request and upgrade with
      // Host 127.0.0.1:WDS (so no allowedHosts), the HMR upgrade among them.
      const want = `127.0.0.1:${WDS_PORT}`;
      const seen = fs.readFileSync(REQUEST_LOG, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
      assert(seen.some((r) => r.kind === "upgrade" && r.url === "/ws"), `no /ws upgrade reached the dev server: ${JSON.stringify(seen)}`);
      assert(seen.some((r) => r.kind === "http" && r.url === "/main.js"), `no /main.js request reached the dev server: ${JSON.stringify(seen)}`);
      assert(!seen.some((r) => r.kind === "upgrade" && r.url !== "/ws"), `an upgrade other than /ws reached the dev server: ${JSON.stringify(seen)}`);
      const wrong = seen.filter((r) => r.host !== want);
      assert(!wrong.length, `dev server got Host other than ${want}: ${JSON.stringify(wrong)}`);
      const up = seen.find((r) => r.kind === "upgrade");
      log(`dev server saw ${seen.length} request(s)/upgrade(s), all with Host ${want}; /ws upgrade Origin ${JSON.stringify(up.origin)}`);
    });

    const shot = path.join(OUT, "devserver-final.png");
    await page.screenshot({ path: shot, fullPage: true });
    log(`screenshot: ${shot}`);
    log(`final page state: ${JSON.stringify(await page.evaluate(pageState))}`);
    const h = hmrSocket();
    if (h) log(`HMR socket messages: ${JSON.stringify(hmrTypes(h))}`);
  } finally {
    fs.writeFileSync(path.join(OUT, "devserver-console.log"), consoleLines.join("\n") + "\n");
    await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

await run(main, {
  timeoutMs: 100_000,
  expected: 6,
});
