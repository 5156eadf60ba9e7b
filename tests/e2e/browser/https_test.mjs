// HTTPS browser test of portero: Chromium that trusts ONLY portero's
// development CA opens https://<tenant>.localhost:PORT/ for tenants named
// nowhere in portero's flags or in `portero cert`'s, so each certificate is
// one portero minted at the first handshake. Per tenant: the page loads over
// a certificate for exactly that name signed by the CA, the SPA's /api/whoami/
// reaches Django for the tenant, and its wss:// Channels WebSocket echoes.
// Then a negative control: a second Chromium, set up the same way but without
// the CA in its NSS database, must fail the navigation with a certificate
// error, so the checks above cannot pass through some other trust.
//
// No --ignore-certificate-errors, no ignoreHTTPSErrors: trust comes only from
// an NSS database ($HOME/.pki/nssdb, made with certutil) in a HOME of the
// browser's own (a temp dir, passed in its environment).
//
// Env (exported by tests/e2e/run.sh):
//   E2E_PORTERO_TLS_PORT  port of portero's --tls-listen (127.0.0.1)
//   E2E_DEV_CA            the CA certificate `portero cert` wrote (dev-ca.pem)
//   E2E_HTTPS_TENANTS     default "acme globex": tenants in the e2e database
//   E2E_OUT               output folder (screenshots, console log)
//   CHROMIUM_BIN          default /usr/bin/chromium
import { chromium } from "playwright-core";
import { assert, harness, pollPage, required } from "./lib.mjs";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const WHO = "https_test";
const { log, check, run } = harness("https");
const PORT = required(WHO, "E2E_PORTERO_TLS_PORT");
const CA = required(WHO, "E2E_DEV_CA");
const TENANTS = (process.env.E2E_HTTPS_TENANTS || "acme globex").split(/\s+/).filter(Boolean);
const OUT = process.env.E2E_OUT || path.resolve("out");
const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const CA_NICK = "portero dev CA";
const CA_SUBJECT = "portero development CA";
// A minted certificate is valid 30 days (from a day back); dev.pem, 825.
const MINTED_MAX_DAYS = 32;
// The flags the HTTP browser test uses; nothing about certificates.
const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];


const consoleLines = [];
const tmpDirs = [];




function certutil(...args) {
  return execFileSync("certutil", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

// A HOME for one browser: an empty NSS database, plus the CA if trustCa.
function browserHome(label, trustCa) {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), `portero-e2e-home-${label}-`));
  tmpDirs.push(home);
  const db = path.join(home, ".pki", "nssdb");
  fs.mkdirSync(db, { recursive: true, mode: 0o700 });
  certutil("-N", "-d", `sql:${db}`, "--empty-password");
  if (trustCa) certutil("-A", "-d", `sql:${db}`, "-n", CA_NICK, "-t", "C,,", "-i", CA);
  const listed = certutil("-L", "-d", `sql:${db}`);
  assert(listed.includes(CA_NICK) === trustCa, `NSS db ${db} lists: ${listed}`);
  log(`HOME ${home}: NSS db ${trustCa ? `trusts ${CA} as "${CA_NICK}" (C,,)` : "without the CA"}`);
  return home;
}

async function launch(label, home) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), `portero-e2e-chromium-${label}-`));
  tmpDirs.push(userDataDir);
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    viewport: { width: 1000, height: 700 },
    ignoreHTTPSErrors: false,
    env: { ...process.env, HOME: home },
    args: ARGS,
  });
}

const pageState = () => ({
  title: document.getElementById("title")?.textContent,
  tenant: document.getElementById("tenant")?.textContent,
  backendHost: document.getElementById("backend-host")?.textContent,
  wsStatus: document.getElementById("ws-status")?.textContent,
  wsTenant: document.getElementById("ws-tenant")?.textContent,
  echo: document.getElementById("echo")?.textContent,
  expectedEcho: window.__expectedEcho,
  sockets: (window.__sockets || []).map((s) => ({ url: s.url, readyState: s.readyState })),
});

async function tenantChecks(context, tenant) {
  const origin = `https://${tenant}.localhost:${PORT}`;
  const page = await context.newPage();
  const tag = (s) => `[${tenant}] ${s}`;
  page.on("console", (m) => consoleLines.push(tag(`[console.${m.type()}] ${m.text()}`)));
  page.on("pageerror", (e) => consoleLines.push(tag(`[pageerror] ${e.message}`)));
  page.on("requestfailed", (r) => consoleLines.push(tag(`[requestfailed] ${r.url()} ${r.failure()?.errorText}`)));
  page.on("response", (r) => { if (r.status() >= 400) consoleLines.push(tag(`[response ${r.status()}] ${r.url()}`)); });
  // The certificate Chromium accepted, per response (CDP: SAN list included).
  const security = new Map();
  const cdp = await context.newCDPSession(page);
  cdp.on("Network.responseReceived", (e) => {
    if (e.response.securityDetails) security.set(e.response.url, e.response.securityDetails);
  });
  await cdp.send("Network.enable");

  const loaded = await check(`https_${tenant}_page_loads_with_minted_cert`, async () => {
    const resp = await page.goto(`${origin}/`, { waitUntil: "load", timeout: 20_000 });
    assert(resp && resp.status() === 200, `GET ${origin}/ status ${resp && resp.status()}`);
    const s = await page.evaluate(pageState);
    assert(s.title === "Portero E2E v1", `unexpected heading ${JSON.stringify(s.title)}`);
    const sd = security.get(`${origin}/`);
    assert(sd, `no security details for ${origin}/ (seen: ${JSON.stringify([...security.keys()])})`);
    log(`${origin}/: ${sd.protocol}, subject ${JSON.stringify(sd.subjectName)}, issuer ${JSON.stringify(sd.issuer)}, `
      + `SAN ${JSON.stringify(sd.sanList)}, valid ${new Date(sd.validFrom * 1000).toISOString()} .. ${new Date(sd.validTo * 1000).toISOString()}`);
    assert(sd.issuer === CA_SUBJECT, `issuer ${JSON.stringify(sd.issuer)}, expected ${CA_SUBJECT}`);
    assert(JSON.stringify(sd.sanList) === JSON.stringify([`${tenant}.localhost`]),
      `SAN list ${JSON.stringify(sd.sanList)}: not a certificate minted for exactly ${tenant}.localhost`);
    const days = (sd.validTo - sd.validFrom) / 86400;
    assert(days <= MINTED_MAX_DAYS, `valid ${days.toFixed(1)} days: not a minted certificate`);
  });
  if (!loaded) return page;

  await check(`https_${tenant}_api_whoami_shows_tenant`, async () => {
    const s = await pollPage(page, () => {
      const t = document.getElementById("tenant")?.textContent;
      return t && t !== "loading..." ? { tenant: t, host: document.getElementById("backend-host").textContent } : null;
    }, null, 10_000, "the whoami result");
    assert(s.tenant === tenant, `tenant shown: ${JSON.stringify(s)}`);
    assert(s.host === `${tenant}.chalanpro.net`, `Host Django saw: ${JSON.stringify(s)}`);
    // What Django saw of the scheme, from a same-origin fetch in the page.
    const who = await page.evaluate(() => fetch("/api/whoami/").then((r) => r.json()));
    assert(who.tenant === tenant && who.x_forwarded_proto === "https",
      `whoami from the page: ${JSON.stringify(who)}`);
    assert(security.get(`${origin}/api/whoami/`)?.issuer === CA_SUBJECT, "/api/whoami/ not served over the minted certificate");
  });

  await check(`https_${tenant}_wss_echo`, async () => {
    const s = await pollPage(page, () => {
      const st = document.getElementById("ws-status")?.textContent;
      const echo = document.getElementById("echo")?.textContent;
      if (echo || (st && st !== "connecting..." && st !== "open")) {
        return { st, echo, wsTenant: document.getElementById("ws-tenant").textContent, expected: window.__expectedEcho };
      }
      return null;
    }, null, 10_000, "the WebSocket echo");
    assert(s.wsTenant === tenant, `ws hello tenant: ${JSON.stringify(s)}`);
    assert(s.echo && s.echo === s.expected, `echo: ${JSON.stringify(s)}`);
    const { sockets } = await page.evaluate(pageState);
    const wsUrl = `wss://${tenant}.localhost:${PORT}/ws/echo/`;
    assert(sockets.some((k) => k.url === wsUrl), `no ${wsUrl} among ${JSON.stringify(sockets)}`);
    assert(sockets.every((k) => k.url.startsWith("wss://")), `a non-wss socket: ${JSON.stringify(sockets)}`);
  });

  // A caption for the screenshot (added by this test, not part of the SPA).
  const sd = security.get(`${origin}/`);
  await page.evaluate((text) => {
    const p = document.createElement("p");
    p.style.cssText = "margin-top:2em;padding:.5em;border:1px dashed #888;font:13px monospace;white-space:pre";
    p.textContent = text;
    document.body.append(p);
  }, `[https_test.mjs] ${origin}/\n${sd.protocol}, certificate for ${JSON.stringify(sd.sanList)} issued by ${sd.issuer},\n`
     + `valid until ${new Date(sd.validTo * 1000).toISOString()}; trusted only through the browser's NSS db`);
  const shot = path.join(OUT, `browser-https-${tenant}.png`);
  await page.screenshot({ path: shot, fullPage: true });
  log(`screenshot: ${shot}; page state: ${JSON.stringify(await page.evaluate(pageState))}`);
  return page;
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  assert(fs.existsSync(CA), `no CA certificate at ${CA}`);
  log(`chromium ${CHROMIUM}, portero https on 127.0.0.1:${PORT}, tenants ${TENANTS.join(", ")}`);

  const trusted = await launch("trusted", browserHome("trusted", true));
  try {
    await trusted.addInitScript(() => {
      const Orig = window.WebSocket;
      window.__sockets = [];
      window.WebSocket = class extends Orig {
        constructor(...args) {
          super(...args);
          window.__sockets.push(this);
        }
      };
    });
    for (const tenant of TENANTS) await tenantChecks(trusted, tenant);
  } finally {
    await trusted.close().catch(() => {});
  }

  // Negative control: the same browser setup minus the CA.
  const untrusted = await launch("untrusted", browserHome("untrusted", false));
  try {
    await check("untrusted_browser_rejects_the_certificate", async () => {
      const page = await untrusted.newPage();
      const url = `https://${TENANTS[0]}.localhost:${PORT}/`;
      let err = null;
      try {
        const resp = await page.goto(url, { waitUntil: "load", timeout: 20_000 });
        err = `loaded with status ${resp && resp.status()}`;
      } catch (e) {
        err = e.message.split("\n")[0];
      }
      log(`without the CA: ${url}: ${err}`);
      assert(/net::ERR_CERT_AUTHORITY_INVALID/.test(err), `expected net::ERR_CERT_AUTHORITY_INVALID, got: ${err}`);
    });
  } finally {
    await untrusted.close().catch(() => {});
  }
}

await run(main, {
  timeoutMs: 120_000,
  expected: 3 * TENANTS.length + 1,
  cleanup: () => {
    fs.writeFileSync(path.join(OUT, "browser-https-console.log"), consoleLines.join("\n") + "\n");
    for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
  },
});
