// Browser test of portero: SPA + API + WebSocket through the proxy, then live
// reload of HTML (full reload) and of CSS (in place, no reload).
//
// Env (exported by tests/e2e/run.sh):
//   E2E_PORTERO_PORT  port portero listens on (127.0.0.1)
//   E2E_SPA_DIR       the served COPY of tests/e2e/spa (this test rewrites it)
//   E2E_OUT           output folder (screenshot, console log)
//   CHROMIUM_BIN      default /usr/bin/chromium
import { chromium } from "playwright-core";
import { assert, harness, pollPage, required } from "./lib.mjs";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const WHO = "browser_test";
const { log, check, run } = harness("browser");
const PORT = required(WHO, "E2E_PORTERO_PORT");
const SPA_DIR = required(WHO, "E2E_SPA_DIR");
const OUT = process.env.E2E_OUT || path.resolve("out");
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const ORIGIN = `http://acme.localhost:${PORT}`;
const RELOAD_TIMEOUT_MS = 10_000;


const consoleLines = [];




const pageState = () => ({
  title: document.getElementById("title")?.textContent,
  tenant: document.getElementById("tenant")?.textContent,
  backendHost: document.getElementById("backend-host")?.textContent,
  wsStatus: document.getElementById("ws-status")?.textContent,
  wsTenant: document.getElementById("ws-tenant")?.textContent,
  echo: document.getElementById("echo")?.textContent,
  expectedEcho: window.__expectedEcho,
  titleColor: document.getElementById("title") ? getComputedStyle(document.getElementById("title")).color : null,
  livereloadScript: !!document.querySelector('script[src="/__portero/livereload.js"]'),
  marker: window.__marker ?? null,
  sockets: (window.__sockets || []).map((s) => ({ url: s.url, readyState: s.readyState })),
});

// The injected live-reload <script> comes after the page's own blocking
// <script src="/app.js">: while that one loads, the parser has not reached the
// injected tag yet, although everything above it (the heading) is in the DOM.
// So a check that reads the DOM after a navigation waits for the page's load
// event (readyState "complete"), by which time the whole HTML has been parsed,
// and the tag is also looked for in the HTML portero served.
const LIVERELOAD_TAG = '<script src="/__portero/livereload.js"></script>';

const liveReloadOpen = () =>
  (window.__sockets || []).some((s) => s.url.includes("/__portero/livereload") && s.readyState === 1);

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "portero-e2e-chromium-"));
  log(`chromium ${CHROMIUM}, profile ${userDataDir}, page ${ORIGIN}/`);
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
  try {
    // Track every WebSocket the page opens (readyState visible to the test).
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

    const loaded = await check("spa_loads_through_portero", async () => {
      const resp = await page.goto(`${ORIGIN}/`, { waitUntil: "load", timeout: 20_000 });
      assert(resp && resp.status() === 200, `GET / status ${resp && resp.status()}`);
      const served = await resp.text();
      assert(served.includes(LIVERELOAD_TAG), `GET / served HTML without ${LIVERELOAD_TAG}: ${JSON.stringify(served)}`);
      const s = await page.evaluate(pageState);
      assert(s.title === "Portero E2E v1", `unexpected heading ${JSON.stringify(s.title)}`);
      assert(s.livereloadScript, "no <script src=\"/__portero/livereload.js\"> injected into the HTML");
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

    await check("websocket_echo_through_portero", async () => {
      const s = await pollPage(page, () => {
        const st = document.getElementById("ws-status")?.textContent;
        const echo = document.getElementById("echo")?.textContent;
        if (echo || (st && st !== "connecting..." && st !== "open")) {
          return { st, echo, wsTenant: document.getElementById("ws-tenant").textContent, expected: window.__expectedEcho };
        }
        return null;
      }, null, 10_000, "the WebSocket echo");
      assert(s.wsTenant === "acme", `ws hello tenant: ${JSON.stringify(s)}`);
      assert(s.echo && s.echo === s.expected, `echo: ${JSON.stringify(s)}`);
    });

    await check("html_change_triggers_full_reload", async () => {
      await pollPage(page, liveReloadOpen, null, 10_000, "the live-reload WebSocket to be open");
      await page.evaluate(() => { window.__marker = "before-html-change"; });
      const navBefore = navigations;
      // The document portero serves for the reload (main-frame navigation).
      const reloadResponse = page.waitForResponse(
        (r) => r.request().isNavigationRequest() && r.frame() === page.mainFrame(),
        { timeout: RELOAD_TIMEOUT_MS });
      reloadResponse.catch(() => {});   // awaited below; no unhandled rejection meanwhile
      const file = path.join(SPA_DIR, "index.html");
      const html = fs.readFileSync(file, "utf8");
      assert(html.includes("Portero E2E v1"), "fixture heading not found in the served copy");
      fs.writeFileSync(file, html.replace("Portero E2E v1", "Portero E2E v2 (reloaded)"));
      log(`rewrote ${file}`);
      await pollPage(page, () => document.readyState === "complete"
          && document.getElementById("title")?.textContent === "Portero E2E v2 (reloaded)",
        null, RELOAD_TIMEOUT_MS, "the page to reload with the new heading and fire its load event");
      const resp = await reloadResponse;
      assert(resp.status() === 200, `reload: GET ${resp.url()} status ${resp.status()}`);
      const served = await resp.text();
      assert(served.includes("Portero E2E v2 (reloaded)"), `reload served the old HTML: ${JSON.stringify(served)}`);
      assert(served.includes(LIVERELOAD_TAG), `reload served HTML without ${LIVERELOAD_TAG}: ${JSON.stringify(served)}`);
      const s = await page.evaluate(pageState);
      assert(s.marker === null, `window.__marker survived (${s.marker}): heading changed without a reload?`);
      assert(navigations > navBefore, "no main-frame navigation observed");
      assert(s.livereloadScript, "reloaded page lacks the live-reload script");
    });

    await check("css_change_applied_without_reload", async () => {
      await pollPage(page, () => document.readyState === "complete"
          && (window.__sockets || []).some((s) => s.url.includes("/__portero/livereload") && s.readyState === 1),
        null, 10_000, "the page's load event and the live-reload WebSocket to be open (after reload)");
      const marker = `css-${Date.now()}`;
      await page.evaluate((m) => { window.__marker = m; }, marker);
      const navBefore = navigations;
      const before = await page.evaluate(pageState);
      assert(before.titleColor === "rgb(200, 0, 0)", `initial heading colour ${before.titleColor}`);
      const file = path.join(SPA_DIR, "style.css");
      const css = fs.readFileSync(file, "utf8");
      assert(css.includes("rgb(200, 0, 0)"), "fixture colour not found in style.css");
      fs.writeFileSync(file, css.replace("rgb(200, 0, 0)", "rgb(0, 90, 200)"));
      log(`rewrote ${file}`);
      await pollPage(page, () => {
        const el = document.getElementById("title");
        return el && getComputedStyle(el).color === "rgb(0, 90, 200)";
      }, null, RELOAD_TIMEOUT_MS, "the new heading colour");
      const s = await page.evaluate(pageState);
      assert(s.marker === marker, `window.__marker is ${JSON.stringify(s.marker)}: the page was fully reloaded`);
      assert(navigations === navBefore, `main frame navigated ${navigations - navBefore} time(s) on a CSS-only change`);
    });

    // Let the page settle (fetch/ws after the last reload), then screenshot.
    await pollPage(page, () => document.getElementById("echo")?.textContent, null, 5_000, "echo after reload").catch(() => {});
    const shot = path.join(OUT, "browser-final.png");
    await page.screenshot({ path: shot, fullPage: true });
    log(`screenshot: ${shot}`);
    log(`final page state: ${JSON.stringify(await page.evaluate(pageState))}`);
  } finally {
    fs.writeFileSync(path.join(OUT, "browser-console.log"), consoleLines.join("\n") + "\n");
    await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

await run(main, {
  timeoutMs: 180_000,
  expected: 5,
});
