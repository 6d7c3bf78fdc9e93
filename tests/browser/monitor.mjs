// Drives the monitor page (/mqtt/monitor/) of a running mqtt-supervisor in
// headless Chromium: the connection's row and badge, a received message in
// the live feed, the filters, pause/resume, a client ID takeover shown as a
// cooldown with a countdown, and screenshots for the docs.
//
// Run by tests/e2e/monitor_page.rs, which starts the broker and the service.
// Environment: MONITOR_URL, BROKER_PORT, CONNECTION, CLIENT_ID, TOPIC (one
// the connection subscribes to), SCREENSHOT_DIR; CHROMIUM (default
// /usr/bin/chromium). Exits 0 after "monitor.mjs: all steps passed", 1 with
// the failed step's reason otherwise.
import { execFile, spawn } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { chromium } from "playwright-core";

const STEP_MS = 20_000;
const TOTAL_MS = 60_000;

function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`monitor.mjs: ${name} is not set`);
    process.exit(1);
  }
  return v;
}
const URL = need("MONITOR_URL");
const BROKER_PORT = need("BROKER_PORT");
const CONNECTION = need("CONNECTION");
const CLIENT_ID = need("CLIENT_ID");
const TOPIC = need("TOPIC");
const SHOTS = need("SCREENSHOT_DIR");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

const started = Date.now();
const log = (msg) => console.log(`monitor.mjs: [${((Date.now() - started) / 1000).toFixed(1)} s] ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class StepFailed extends Error {}

// Runs one step with its own deadline; any error becomes the step's failure.
async function step(name, fn) {
  log(`step ${name}`);
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new StepFailed(`step ${name}: not done within ${STEP_MS / 1000} s`)), STEP_MS);
  });
  try {
    await Promise.race([fn(), deadline]);
  } catch (e) {
    throw e instanceof StepFailed ? e : new StepFailed(`step ${name}: ${e.message}`);
  } finally {
    clearTimeout(timer);
  }
}

// Waits for `cond` (a function run in the page with `arg`) to return truthy;
// on timeout fails with `what`.
async function until(page, what, cond, arg, timeout = 15_000) {
  try {
    return await (await page.waitForFunction(cond, arg, { timeout, polling: 100 })).jsonValue();
  } catch (e) {
    throw new StepFailed(`${what} (${e.message.split("\n")[0]})`);
  }
}

function publish(payload) {
  return new Promise((resolve, reject) => {
    execFile("mosquitto_pub", ["-h", "127.0.0.1", "-p", BROKER_PORT, "-t", TOPIC, "-q", "1", "-m", payload],
      { timeout: 10_000 }, (err, _out, stderr) => (err ? reject(new StepFailed(`mosquitto_pub failed: ${err.message} ${stderr}`)) : resolve()));
  });
}

// In the page: whether the feed shows (`want`) or does not show a message of
// kind `kind` from `connection` on `topic` whose payload text is `payload`.
function feedHas({ kind, connection, topic, payload, want }) {
  const n = [...document.querySelectorAll(`#feed .feed-item[data-kind="${kind}"]`)].filter((li) =>
    li.dataset.connection === connection &&
    li.querySelector(".topic")?.textContent === topic &&
    li.querySelector(".payload")?.textContent === payload).length;
  return want ? n > 0 : n === 0;
}

const rowSel = `#connections tr[data-name=${JSON.stringify(CONNECTION)}]`;
const FIRST = '{"temp":21.5}';
const FIRST_PRETTY = '{\n  "temp": 21.5\n}';
const SECOND = '{"temp":22,"while":"paused","ids":[1,2]}';
const SECOND_PRETTY = '{\n  "temp": 22,\n  "while": "paused",\n  "ids": [\n    1,\n    2\n  ]\n}';
const first = { kind: "in", connection: CONNECTION, topic: TOPIC, payload: FIRST_PRETTY, want: true };
const firstGone = { ...first, want: false };
const second = { ...first, payload: SECOND_PRETTY };
const secondGone = { ...second, want: false };

let browser;
let page;
let foreign;
const pageErrors = [];

async function main() {
  await mkdir(SHOTS, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--headless=new"], timeout: STEP_MS });
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(15_000);
  page.on("pageerror", (e) => pageErrors.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(`console error: ${m.text()}`);
  });

  await step("a: the connection's row shows connected with its client ID", async () => {
    const res = await page.goto(URL, { waitUntil: "load" });
    if (!res || res.status() !== 200) throw new StepFailed(`GET ${URL} answered ${res && res.status()}`);
    const csp = res.headers()["content-security-policy"];
    if (!csp) log("note: the page came without a Content-Security-Policy header");
    const title = await page.title();
    if (title !== "mqtt-supervisor monitor") throw new StepFailed(`title is ${JSON.stringify(title)}`);
    await until(page, `no row ${CONNECTION} with a badge data-status="connected"`,
      (sel) => document.querySelector(`${sel} .badge[data-status="connected"]`), rowSel);
    const text = await page.locator(rowSel).innerText();
    if (!text.includes(CLIENT_ID)) throw new StepFailed(`the row does not show client ID ${CLIENT_ID}: ${JSON.stringify(text)}`);
    const badge = await page.locator(`${rowSel} .badge`).innerText();
    if (badge.trim() !== "connected") throw new StepFailed(`the badge says ${JSON.stringify(badge)}`);
  });

  await step("b: a received JSON message appears in the feed, pretty-printed", async () => {
    await publish(FIRST);
    await until(page, `no .feed-item[data-kind="in"] for ${TOPIC} with payload ${JSON.stringify(FIRST_PRETTY)}`, feedHas, first);
  });

  await step("c: filters hide and show the row and the message", async () => {
    await page.fill("#filter-text", "zz-no-such-connection");
    await until(page, "the row stayed with a non-matching text filter", (sel) => !document.querySelector(sel), rowSel, 5_000);
    await page.fill("#filter-text", "");
    await until(page, "the row did not come back when the text filter was cleared", (sel) => !!document.querySelector(sel), rowSel, 5_000);
    await page.fill("#filter-text", CLIENT_ID.slice(0, -1));
    await until(page, "the text filter does not match the client ID", (sel) => !!document.querySelector(sel), rowSel, 5_000);
    await page.fill("#filter-text", "");
    await page.selectOption("#filter-status", "error");
    await until(page, "the row stayed with state filter error", (sel) => !document.querySelector(sel), rowSel, 5_000);
    await page.selectOption("#filter-status", "connected");
    await until(page, "the row is missing with state filter connected", (sel) => !!document.querySelector(sel), rowSel, 5_000);
    await page.selectOption("#filter-status", "");
    await page.selectOption("#feed-direction", "out");
    await until(page, "the in message stayed with direction out", feedHas, firstGone, 5_000);
    await page.selectOption("#feed-direction", "all");
    await until(page, "the in message did not come back with direction all", feedHas, first, 5_000);
    await page.fill("#feed-topic", "zz-no-such-topic");
    await until(page, "the in message stayed with a non-matching topic filter", feedHas, firstGone, 5_000);
    await page.fill("#feed-topic", TOPIC.slice(0, -1));
    await until(page, "the in message is hidden by a matching topic filter", feedHas, first, 5_000);
    await page.fill("#feed-topic", "");
  });

  await step("d: pause freezes the feed, resume shows what came meanwhile", async () => {
    await page.click("#pause");
    const pressed = await page.getAttribute("#pause", "aria-pressed");
    if (pressed !== "true") throw new StepFailed(`#pause has aria-pressed=${pressed} after a click`);
    await publish(SECOND);
    // The poll sees the message (the button counts it) but the feed stays.
    await until(page, "#pause does not count the message that came while paused", () => /\b1 new\b/.test(document.getElementById("pause").textContent), null, 10_000);
    if (!(await page.evaluate(feedHas, secondGone))) throw new StepFailed("the message published while paused is in the feed");
    await page.click("#pause");
    await until(page, "the message published while paused did not appear after resume", feedHas, second, 5_000);
    const newestFirst = await page.evaluate(() => document.querySelector("#feed .feed-item .payload")?.textContent);
    if (newestFirst !== SECOND_PRETTY) throw new StepFailed(`the newest item is not first: ${JSON.stringify(newestFirst)}`);
  });

  await step("e: a takeover of the client ID shows cooldown with a countdown", async () => {
    foreign = spawn("mosquitto_sub", ["-h", "127.0.0.1", "-p", BROKER_PORT, "-i", CLIENT_ID, "-t", "x/#"], { stdio: "ignore" });
    foreign.on("error", (e) => pageErrors.push(`mosquitto_sub: ${e.message}`));
    await until(page, `the row's badge did not turn data-status="cooldown"`,
      (sel) => document.querySelector(`${sel} .badge[data-status="cooldown"]`), rowSel);
    const left = await until(page, "no countdown next to the cooldown badge",
      (sel) => { const t = document.querySelector(`${sel} .countdown`)?.textContent || ""; return /^(\d+ s|\d+:\d\d) left$/.test(t) && t; }, rowSel, 5_000);
    await until(page, `the countdown does not tick (stuck at ${JSON.stringify(left)})`,
      ([sel, was]) => { const t = document.querySelector(`${sel} .countdown`)?.textContent; return t && t !== was && /left$/.test(t); },
      [rowSel, left], 4_000);
    await until(page, "no cooldown event in the feed",
      (name) => [...document.querySelectorAll('#feed .feed-item[data-kind="event"]')]
        .some((li) => li.dataset.connection === name && li.querySelector('.badge[data-status="cooldown"]')), CONNECTION, 10_000);
  });

  await step("f: screenshots (desktop 1280x800, phone 390x844)", async () => {
    await page.screenshot({ path: join(SHOTS, "monitor.png"), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await sleep(300);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 0) throw new StepFailed(`on a 390 px phone the page is ${overflow} px wider than the screen`);
    await page.screenshot({ path: join(SHOTS, "monitor-phone.png") });
  });

  if (pageErrors.length) throw new StepFailed(`the page reported errors:\n  ${pageErrors.join("\n  ")}`);
}

async function diagnose() {
  if (!page) return;
  try {
    await page.screenshot({ path: join(SHOTS, "monitor-failure.png"), fullPage: true });
    console.error(`monitor.mjs: the page at failure is in ${join(SHOTS, "monitor-failure.png")}`);
    const seen = await page.evaluate(() => ({
      banner: document.getElementById("banner")?.hidden ? null : document.getElementById("banner")?.textContent,
      rows: [...document.querySelectorAll("#connections tr")].map((tr) => tr.innerText.replace(/\s+/g, " ")),
      feed: [...document.querySelectorAll("#feed li")].slice(0, 8).map((li) => li.innerText.replace(/\s+/g, " ")),
      note: document.getElementById("feed-note")?.textContent,
    }));
    console.error(`monitor.mjs: the page showed ${JSON.stringify(seen, null, 2)}`);
  } catch (e) {
    console.error(`monitor.mjs: could not inspect the page: ${e.message}`);
  }
  if (pageErrors.length) console.error(`monitor.mjs: page errors:\n  ${pageErrors.join("\n  ")}`);
}

let code = 0;
const watchdog = setTimeout(() => {
  console.error(`monitor.mjs: FAILED: not done within ${TOTAL_MS / 1000} s`);
  foreign?.kill();
  process.exit(1);
}, TOTAL_MS);
try {
  await main();
  console.log("monitor.mjs: all steps passed");
} catch (e) {
  code = 1;
  console.error(`monitor.mjs: FAILED: ${e instanceof StepFailed ? e.message : e.stack}`);
  await diagnose();
} finally {
  foreign?.kill();
  await browser?.close().catch(() => {});
  clearTimeout(watchdog);
}
process.exit(code);
