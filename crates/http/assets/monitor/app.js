// mqtt-supervisor monitor: polls the REST API every 2 s and renders the
// connections table and the live feed. Plain DOM. Every string from the API
// (names, broker replies, payloads) goes in as textContent, never as HTML.
"use strict";

const API = "/api/v1/mqtt/";
const POLL_MS = 2000;
const RETRY_MS = 10000;
const FEED_MAX = 100;
const STATES = ["connected", "connecting", "cooldown", "error", "disconnected", "stopped", "disabled"];
// The State column's order: what needs an operator first.
const SEVERITY = { error: 0, cooldown: 1, disconnected: 2, connecting: 3, stopped: 4, disabled: 5, connected: 6 };
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
const nf = new Intl.NumberFormat();
const text = (k) => (a, b) => collator.compare(a[k] || "", b[k] || "");
const num = (k) => (a, b) => a[k] - b[k];
// column: [compare, first direction]
const SORTS = {
  name: [text("name"), 1],
  state: [(a, b) => SEVERITY[a.state] - SEVERITY[b.state], 1],
  client: [text("client_id"), 1],
  broker: [text("broker"), 1],
  since: [(a, b) => b.since - a.since, 1], // shortest first
  reconnects: [num("reconnects"), -1],
  in: [num("messages_in"), -1],
  out: [num("messages_out"), -1],
};

const $ = (id) => document.getElementById(id);
const el = {
  instance: $("instance"), counts: $("counts"), live: $("live"), updated: $("updated"),
  banner: $("banner"), tbody: $("connections"), empty: $("conns-empty"), shown: $("shown"),
  text: $("filter-text"), status: $("filter-status"),
  feed: $("feed"), feedConn: $("feed-connection"), feedTopic: $("feed-topic"),
  feedDir: $("feed-direction"), pause: $("pause"), feedNote: $("feed-note"),
};
const S = {
  conns: [],
  skew: 0, // server clock minus ours (ms): cooldowns end in server time
  lastOk: null,
  failing: false,
  sort: { key: "state", dir: 1 },
  rows: new Map(), // connection name -> its row's elements
  names: "", // the feed-connection options as last built
  feedLatest: [], // the feed as last fetched
  feedShown: [], // the feed on screen (frozen while paused)
  feedError: null,
  paused: false,
  items: new Map(), // feed item key -> <li>
};

function h(tag, cls, txt) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (txt != null) e.textContent = txt;
  return e;
}
function setText(e, t) {
  t = t == null ? "" : String(t);
  if (e.textContent !== t) e.textContent = t;
}
const ms = (iso) => (iso ? Date.parse(iso) : null);
const pad = (n) => String(n).padStart(2, "0");

function duration(d) {
  const s = Math.max(0, Math.floor(d / 1000));
  const m = Math.floor(s / 60);
  const hr = Math.floor(m / 60);
  if (s < 60) return `${s} s`;
  if (m < 60) return `${m} min`;
  if (hr < 48) return `${hr} h ${m % 60} min`;
  return `${Math.floor(hr / 24)} d ${hr % 24} h`;
}
function countdown(left) {
  const s = Math.ceil(left / 1000);
  if (s <= 0) return "retrying…";
  return s < 60 ? `${s} s left` : `${Math.floor(s / 60)}:${pad(s % 60)} left`;
}
function clock(t) {
  const d = new Date(t);
  const opts = { hour12: false };
  return new Date().toDateString() === d.toDateString() ? d.toLocaleTimeString([], opts) : d.toLocaleString([], opts);
}

// --- fetch
async function getJson(path) {
  const what = path.split("?")[0];
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), 8000);
  try {
    const r = await fetch(API + path, { cache: "no-store", signal: ctl.signal });
    const body = await r.json().catch(() => null);
    if (!r.ok) throw new Error(`${what}: HTTP ${r.status}${body && body.error ? `: ${body.error}` : ""}`);
    if (!body) throw new Error(`${what}: the answer is not JSON`);
    return body;
  } catch (e) {
    throw e.name === "AbortError" ? new Error(`${what}: no answer within 8 s`) : e;
  } finally {
    clearTimeout(timer);
  }
}

// The feed's queries: the connection and direction filters narrow them, so
// the 100 items are the 100 newest that match.
function feedQuery(kind) {
  const dir = el.feedDir.value;
  if (kind === "events" ? dir === "in" || dir === "out" : dir === "event") return null;
  const p = new URLSearchParams({ limit: FEED_MAX });
  if (el.feedConn.value) p.set("connection", el.feedConn.value);
  if (kind === "messages" && dir !== "all") p.set("direction", dir);
  return `${kind}?${p}`;
}

let timer = null;
let inFlight = false;
let again = false;

// One request set at a time: a poll asked for meanwhile runs right after.
async function poll() {
  clearTimeout(timer);
  if (inFlight) { again = true; return; }
  inFlight = true;
  again = false;
  const mq = feedQuery("messages");
  const eq = feedQuery("events");
  const [c, m, e] = await Promise.allSettled([
    getJson("connections"),
    mq ? getJson(mq) : { messages: [] },
    eq ? getJson(eq) : { events: [] },
  ]);
  inFlight = false;
  S.failing = c.status === "rejected";
  if (S.failing) showBanner(c.reason);
  else {
    S.lastOk = Date.now();
    if (c.value.database === "unreachable") {
      // States are live; the rows are those of the last database read.
      el.banner.textContent = `The database is unreachable: connection states are live, the list of connections is as of ${clock(ms(c.value.rows_as_of))}; messages and events cannot be read.`;
      el.banner.hidden = false;
    } else el.banner.hidden = true;
    takeConnections(c.value);
  }
  if (m.status === "fulfilled" && e.status === "fulfilled") {
    S.feedError = null;
    takeFeed(m.value.messages || [], e.value.events || []);
  } else if (!S.failing) S.feedError = (m.reason || e.reason).message;
  renderStatus();
  renderFeed();
  if (again) poll();
  else timer = setTimeout(poll, S.failing ? RETRY_MS : POLL_MS);
}

function showBanner(err) {
  const data = S.lastOk ? `Showing the data of ${clock(S.lastOk)}.` : "No data yet.";
  el.banner.textContent = `Cannot reach the mqtt-supervisor API (${err.message || err}). ${data} Retrying every ${RETRY_MS / 1000} s.`;
  el.banner.hidden = false;
}

// --- connections
function takeConnections(body) {
  const now = ms(body.now);
  if (now) S.skew = now - Date.now();
  setText(el.instance, body.instance_id || "?");
  S.conns = (body.connections || []).map((c) => ({
    ...c,
    state: c.enabled === false ? "disabled" : STATES.includes(c.status) ? c.status : "error",
    since: c.status === "connected" ? ms(c.connected_since) : null,
    until: c.status === "cooldown" ? ms(c.cooldown_until) : null,
    reconnects: c.reconnects || 0,
    messages_in: c.messages_in || 0,
    messages_out: c.messages_out || 0,
  }));
  renderCounts();
  renderFeedOptions();
  renderTable();
}

function renderCounts() {
  const n = { "": S.conns.length };
  for (const s of STATES) n[s] = 0;
  for (const c of S.conns) n[c.state] += 1;
  if (!el.counts.childElementCount) {
    for (const s of ["", ...STATES]) {
      const b = h("button", "chip");
      b.type = "button";
      b.dataset.status = s || "all";
      b.dataset.value = s;
      b.append(h("span", "n"), h("span", null, s || "all"));
      el.counts.append(b);
    }
  }
  for (const b of el.counts.children) {
    const count = n[b.dataset.value];
    setText(b.firstChild, nf.format(count));
    b.classList.toggle("zero", count === 0);
    b.setAttribute("aria-pressed", String(el.status.value === b.dataset.value));
  }
}

function matches(c) {
  const want = el.status.value;
  if (want === "problem" ? c.state === "connected" || c.state === "disabled" : want && c.state !== want) return false;
  const q = el.text.value.trim().toLowerCase();
  return !q || [c.name, c.client_id, c.broker].some((v) => v && v.toLowerCase().includes(q));
}

function row(name) {
  let r = S.rows.get(name);
  if (r) return r;
  const tr = h("tr");
  tr.dataset.name = name;
  const td = (label, cls, ...kids) => {
    const t = h("td", cls);
    t.dataset.label = label;
    t.append(...kids);
    tr.append(t);
    return t;
  };
  r = {
    tr,
    name: h("button", "link cut", name),
    badge: h("span", "badge"),
    countdown: h("span", "countdown"),
    held: h("span", "tag held", "held"),
    client: h("span", "mono cut"),
    broker: h("span", "mono cut"),
    proto: h("span", "tag"),
    tls: h("span", "tag", "TLS"),
    detail: h("span"),
    error: h("span", "error"),
  };
  r.name.type = "button";
  r.name.title = `${name}: show in the live feed`;
  r.held.title = "Disconnected through the API: stays down until connected again";
  td("Name", "name", r.name);
  td("State", "state", r.badge, r.countdown, r.held);
  td("Client ID", "client", r.client);
  td("Broker", "broker", r.broker, r.proto, r.tls);
  r.since = td("Connected since", "since");
  r.reconnects = td("Reconnects", "num");
  r.in = td("Msgs in", "num");
  r.out = td("Msgs out", "num");
  td("Detail", "detail", r.detail, r.error);
  S.rows.set(name, r);
  return r;
}

function fill(r, c) {
  r.tr.dataset.state = c.state;
  r.badge.dataset.status = c.status;
  r.badge.dataset.state = c.state;
  setText(r.badge, c.state);
  r.badge.title = c.enabled === false ? `disabled (status: ${c.status})` : c.status;
  r.countdown.hidden = c.until == null;
  r.countdown.dataset.until = c.until ?? "";
  r.held.hidden = !c.held;
  setText(r.client, c.client_id);
  r.client.title = c.client_id || "";
  setText(r.broker, c.broker);
  r.broker.title = c.broker || "";
  setText(r.proto, `v${c.protocol}`);
  r.proto.hidden = !c.protocol;
  r.tls.hidden = !c.tls;
  r.since.dataset.since = c.since ?? "";
  r.since.title = c.since == null ? "" : new Date(c.since).toLocaleString();
  setText(r.reconnects, nf.format(c.reconnects));
  setText(r.in, nf.format(c.messages_in));
  setText(r.out, nf.format(c.messages_out));
  setText(r.detail, c.detail === c.status ? "" : c.detail); // "connected" again is noise
  // The detail often repeats the last error ("connection refused; retrying in 4 s").
  const err = c.last_error && !(c.detail || "").includes(c.last_error) ? c.last_error : "";
  setText(r.error, err && `last error: ${err}`);
  r.error.hidden = !err;
  r.error.classList.toggle("old", c.state === "connected");
}

function renderTable() {
  const { key, dir } = S.sort;
  const cmp = SORTS[key][0];
  const seen = new Set();
  for (const c of S.conns) {
    seen.add(c.name);
    fill(row(c.name), c);
  }
  for (const [name, r] of S.rows) if (!seen.has(name)) { r.tr.remove(); S.rows.delete(name); }
  const order = (a, b) => {
    // Never connected stays last, whichever way "since" sorts.
    if (key === "since" && (a.since == null || b.since == null)) return (a.since == null) - (b.since == null);
    return cmp(a, b) * dir;
  };
  const shown = S.conns.filter(matches).sort((a, b) => order(a, b) || collator.compare(a.name, b.name));
  // Move only rows out of place: a table that did not change costs nothing.
  let at = el.tbody.firstChild;
  for (const c of shown) {
    const tr = S.rows.get(c.name).tr;
    if (tr === at) at = at.nextSibling;
    else el.tbody.insertBefore(tr, at);
  }
  while (at) { const next = at.nextSibling; at.remove(); at = next; }
  const total = nf.format(S.conns.length);
  setText(el.shown, shown.length === S.conns.length ? `${total} connections` : `${nf.format(shown.length)} of ${total} shown`);
  el.empty.hidden = shown.length > 0;
  setText(el.empty, S.conns.length ? "No connection matches the filters." : "No connections configured.");
  for (const th of document.querySelectorAll("th[data-key]")) {
    th.setAttribute("aria-sort", th.dataset.key !== key ? "none" : dir > 0 ? "ascending" : "descending");
  }
  tick();
}

function sortBy(key) {
  S.sort = { key, dir: S.sort.key === key ? -S.sort.dir : SORTS[key][1] };
  renderTable();
}

// --- feed
function takeFeed(messages, events) {
  const items = [
    ...messages.map((m) => ({ ...m, kind: m.direction === "out" ? "out" : "in" })),
    ...events.map((e) => ({ ...e, kind: "event" })),
  ];
  for (const it of items) {
    it.t = ms(it.at);
    it.key = `${it.kind}:${it.id}`;
  }
  items.sort((a, b) => b.t - a.t || b.id - a.id);
  S.feedLatest = items.slice(0, FEED_MAX);
  if (!S.paused) S.feedShown = S.feedLatest;
}

function feedFilter(it) {
  const dir = el.feedDir.value;
  const topic = el.feedTopic.value.trim().toLowerCase();
  if (el.feedConn.value && it.connection !== el.feedConn.value) return false;
  if (dir !== "all" && it.kind !== dir) return false;
  return !topic || ((it.kind === "event" ? it.status : it.topic) || "").toLowerCase().includes(topic);
}

// Re-indents valid JSON without parsing its numbers, so 12345678901234567890
// stays as sent (JSON.parse would round it).
function prettyJson(src) {
  const t = src.trim();
  if (!/^[[{]/.test(t)) return null;
  try { JSON.parse(t); } catch { return null; }
  const ws = " \t\n\r";
  let out = "";
  let depth = 0;
  const nl = () => `\n${"  ".repeat(depth)}`;
  for (let i = 0; i < t.length; i++) {
    const ch = t[i];
    if (ch === '"') {
      let j = i + 1;
      while (t[j] !== '"') j += t[j] === "\\" ? 2 : 1;
      out += t.slice(i, j + 1);
      i = j;
    } else if (ch === "{" || ch === "[") {
      let j = i + 1;
      while (ws.includes(t[j])) j++;
      if (t[j] === (ch === "{" ? "}" : "]")) { out += ch + t[j]; i = j; continue; }
      depth++;
      out += ch + nl();
    } else if (ch === "}" || ch === "]") {
      depth--;
      out += nl() + ch;
    } else if (ch === ",") out += `,${nl()}`;
    else if (ch === ":") out += ": ";
    else if (!ws.includes(ch)) out += ch;
  }
  return out;
}

function feedItem(it) {
  const li = h("li", `feed-item kind-${it.kind}`);
  li.dataset.kind = it.kind;
  li.dataset.connection = it.connection || "";
  const time = h("time", null, it.t ? clock(it.t) : "?");
  time.dateTime = time.title = it.at || "";
  const meta = h("div", "meta");
  meta.append(time, h("span", "kind", it.kind), h("span", "conn", it.connection));
  li.append(meta);
  if (it.kind === "event") {
    const b = h("span", "badge", it.status);
    b.dataset.status = b.dataset.state = it.status;
    meta.append(b);
    if (it.detail && it.detail !== it.status) li.append(h("div", "payload", it.detail));
    return li;
  }
  meta.append(h("span", "topic", it.topic), h("span", "tag", `QoS ${it.qos}`));
  if (it.retain) meta.append(h("span", "tag", "retained"));
  if (it.kind === "out" || it.status !== "received") meta.append(h("span", `tag st-${it.status}`, it.status));
  if (it.hmac_verdict) meta.append(h("span", "tag", `HMAC ${it.hmac_verdict}`));
  let body;
  if (it.payload_hex != null) {
    body = h("pre", "payload hex", it.payload_hex.replace(/(..)(?!$)/g, "$1 "));
    body.title = "not UTF-8: hex";
  } else {
    const txt = it.payload_text ?? "";
    body = h("pre", "payload", prettyJson(txt) ?? txt);
    if (!txt) body.classList.add("none");
  }
  li.append(body);
  if (it.truncated) li.append(h("div", "note", `(truncated, ${nf.format(it.size)} bytes)`));
  if (it.error) li.append(h("div", "error", it.error));
  return li;
}

function renderFeed() {
  const list = S.feedShown.filter(feedFilter);
  const keep = new Set();
  let at = el.feed.firstChild;
  for (const it of list) {
    // A stored item never changes, except an outgoing one's status.
    const k = `${it.key}|${it.status}|${it.error || ""}`;
    keep.add(k);
    let li = S.items.get(k);
    if (!li) S.items.set(k, (li = feedItem(it)));
    if (li === at) at = at.nextSibling;
    else el.feed.insertBefore(li, at);
  }
  while (at) { const next = at.nextSibling; at.remove(); at = next; }
  for (const k of S.items.keys()) if (!keep.has(k)) S.items.delete(k);
  if (!list.length) el.feed.append(h("li", "empty", S.feedShown.length ? "Nothing matches the feed filters." : "No messages or state changes yet."));
  let note = `${list.length} shown`;
  let button = "Pause";
  if (S.paused) {
    const shown = new Set(S.feedShown.map((i) => i.key));
    const newest = S.feedShown.length ? S.feedShown[0].t : 0;
    const fresh = S.feedLatest.filter((i) => !shown.has(i.key) && i.t >= newest).length;
    const n = `${fresh}${fresh >= FEED_MAX ? "+" : ""}`;
    note = fresh ? `${n} new since paused` : "paused";
    button = fresh ? `Resume (${n} new)` : "Resume";
  }
  setText(el.pause, button);
  setText(el.feedNote, S.feedError ? `feed: ${S.feedError}` : note);
  el.feedNote.classList.toggle("error", !!S.feedError);
}

function renderFeedOptions() {
  const names = S.conns.map((c) => c.name).sort(collator.compare);
  if (names.join("\n") === S.names) return;
  S.names = names.join("\n");
  const current = el.feedConn.value;
  const opts = [new Option("all connections", ""), ...names.map((n) => new Option(n, n))];
  if (current && !names.includes(current)) opts.push(new Option(`${current} (gone)`, current));
  el.feedConn.replaceChildren(...opts);
  el.feedConn.value = current;
}

// --- status
function renderStatus() {
  const mode = S.failing ? "offline" : S.paused ? "paused" : "live";
  el.live.dataset.mode = mode;
  setText(el.live, mode === "paused" ? "feed paused" : mode);
  tick();
}

// Every second: countdowns, durations and the age of the data.
function tick() {
  const now = Date.now() + S.skew;
  for (const r of S.rows.values()) {
    const { until } = r.countdown.dataset;
    if (until) setText(r.countdown, countdown(until - now));
    const { since } = r.since.dataset;
    setText(r.since, since ? duration(now - since) : "—");
  }
  if (!S.lastOk) return;
  const age = Date.now() - S.lastOk;
  setText(el.updated, age < 5000 ? clock(S.lastOk) : `${clock(S.lastOk)} (${duration(age)} ago)`);
  el.updated.dateTime = new Date(S.lastOk).toISOString();
  el.updated.classList.toggle("stale", age > RETRY_MS + 5000);
}

// --- wiring
for (const s of STATES) el.status.append(new Option(s, s));
function feedChanged(refetch) {
  renderFeed();
  if (refetch && !S.failing) poll();
}

for (const th of document.querySelectorAll("th[data-key]")) {
  th.querySelector("button").addEventListener("click", () => sortBy(th.dataset.key));
}
const refilter = () => { renderTable(); renderCounts(); };
el.text.addEventListener("input", refilter);
el.status.addEventListener("change", refilter);
el.counts.addEventListener("click", (ev) => {
  const b = ev.target.closest("button.chip");
  if (!b) return;
  el.status.value = el.status.value === b.dataset.value ? "" : b.dataset.value;
  refilter();
});
el.tbody.addEventListener("click", (ev) => {
  const b = ev.target.closest("button.link");
  if (!b) return;
  el.feedConn.value = b.closest("tr").dataset.name;
  feedChanged(true);
  el.feedConn.scrollIntoView({ behavior: "smooth", block: "start" });
});
el.feedConn.addEventListener("change", () => feedChanged(true));
el.feedDir.addEventListener("change", () => feedChanged(true));
el.feedTopic.addEventListener("input", () => feedChanged(false));
el.pause.addEventListener("click", () => {
  S.paused = !S.paused;
  el.pause.setAttribute("aria-pressed", String(S.paused));
  if (!S.paused) S.feedShown = S.feedLatest;
  renderStatus();
  renderFeed();
  if (!S.paused) poll();
});
setInterval(tick, 1000);
poll();
