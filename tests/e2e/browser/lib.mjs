// What the browser tests share: required env, the check/assert harness,
// and polling with a deadline (never a bare sleep where a condition exists).

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The value of env `name`, or exit 2 naming it (`who` is the test's name).
export function required(who, name) {
  const v = process.env[name];
  if (!v) {
    console.error(`${who}: env ${name} is not set (run via tests/e2e/run.sh)`);
    process.exit(2);
  }
  return v;
}

export function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

// A logger prefixed with `[prefix]`, and `check(name, fn)`, which runs one
// named check and records PASS or FAIL in `results`.
export function harness(prefix) {
  const results = [];
  const log = (...a) => console.log(`[${prefix}]`, ...a);
  async function check(name, fn) {
    const t0 = Date.now();
    try {
      await fn();
      results.push([name, "PASS"]);
      log(`PASS ${name} (${Date.now() - t0} ms)`);
      return true;
    } catch (e) {
      results.push([name, "FAIL"]);
      log(`FAIL ${name} (${Date.now() - t0} ms): ${e && e.stack ? e.stack : e}`);
      return false;
    }
  }
  // Runs `main` under a hard timeout, records a failure of the setup
  // itself, runs `cleanup`, prints the summary, and sets the exit code:
  // failing if any check failed or fewer than `expected` ran.
  async function run(main, { timeoutMs, expected, cleanup = () => {} }) {
    const hardTimeout = setTimeout(() => {
      console.error(`[${prefix}] FATAL: hard timeout (${timeoutMs / 1000} s)`);
      process.exit(3);
    }, timeoutMs);
    try {
      await main();
    } catch (e) {
      results.push([`${prefix}_setup`, "FAIL"]);
      log(`FAIL ${prefix}_setup: ${e && e.stack ? e.stack : e}`);
    } finally {
      cleanup();
    }
    clearTimeout(hardTimeout);
    const failed = results.filter(([, r]) => r !== "PASS").length;
    const passed = results.length - failed;
    for (const [n, r] of results) log(`${r.padEnd(4)} ${n}`);
    if (results.length < expected && failed === 0) {
      log(`only ${results.length} of ${expected} checks ran`);
      process.exitCode = 1;
    }
    console.log(`${prefix}: ${passed} passed, ${failed} failed`);
    if (failed) process.exitCode = 1;
  }
  return { results, log, check, run };
}

// Polls fn(arg) in the page until it returns a truthy value; survives
// navigations.
export async function pollPage(page, fn, arg, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await page.evaluate(fn, arg);
      if (last) return last;
    } catch (e) {
      last = `evaluate failed (navigation?): ${e.message.split("\n")[0]}`;
    }
    await sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last value: ${JSON.stringify(last)}`);
}

// Polls fn() in node until it returns a truthy value.
export async function pollNode(fn, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const v = fn();
    if (v) return v;
    await sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

// Polls the async fn() in node until it returns a truthy value. On timeout
// the error names `what` and describe() (what was seen last), if given.
export async function pollAsync(fn, timeoutMs, what, describe = () => undefined) {
  const deadline = Date.now() + timeoutMs;
  let failure = null;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      failure = null;
      if (v) return v;
    } catch (e) {
      failure = e.message.split("\n")[0];
    }
    await sleep(100);
  }
  const seen = failure ? `last call failed: ${failure}` : `last seen: ${JSON.stringify(describe())}`;
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; ${seen}`);
}
