// The page: device cards with states, live values and sparklines; the token; registering a
// device (from a profile, or with tags picked from the server). The device view (chart, values
// to set, edit, enable/disable, delete) and the picker are modules of their own.
import {
  $, h, svg, setText, sleep, ints, clock, describeValue, isNumeric, parseJson,
  AuthError, ApiError, session, api, dev, refusal, toast,
} from "./lib.js";
import { openDevice, refreshDeviceView } from "./device-view.js";
import { pickTags } from "./browse.js";

const STATES = ["online", "degraded", "offline", "disabled", "starting"];
const STATUS_EVERY = 5000;        // ms: device list and states
const HISTORY_EVERY = 60000;      // ms: sparklines reloaded from the history
const SPARK_WINDOW = 600000;      // ms shown by a sparkline
const SPARK_BUCKET = 5;           // s per sparkline point (the history's downsampling)
const COLLAPSED_TAGS = 8;         // tags shown until "Show all"
const MAX_REQUESTS = 4;           // parallel /latest and /history requests
const LONG_VALUE = 13;            // characters: a longer value takes the sparkline's room
const TOKEN_KEY = "gateway.token";

const S = {
  authed: false,
  admin: false,            // the token may change the configuration (its role is admin)
  write: false,            // the token may set values on devices (operator or admin)
  discoverable: new Set(), // protocols whose servers can be browsed for tags
  devices: new Map(),      // id -> Device
  profiles: new Map(),     // id -> profile
  protocols: null,         // type -> {type, fields}, from the installed plugins
  profileShapes: new Map(), // id -> its config as JSON, to notice a change
  picked: [],              // variables picked from a server for the device being registered
  filterTerms: [], stateFilter: null,
  historyOff: false,
  dirty: new Set(),        // tags whose cell must be redrawn
  sparkDirty: new Set(),   // tags whose sparkline must be redrawn
  frame: 0, stream: null, timers: [], listing: null,
};
session.onUnauthorized = () => askToken(true);

const queue = [];
let active = 0;
function queued(job) {
  return new Promise((resolve, reject) => { queue.push({ job, resolve, reject }); pump(); });
}
function pump() {
  while (active < MAX_REQUESTS && queue.length) {
    const { job, resolve, reject } = queue.shift();
    active++;
    job().then(resolve, reject).finally(() => { active--; pump(); });
  }
}

// -- token -----------------------------------------------------------------------------------
function readToken() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}
function askToken(rejected) {
  S.authed = false;
  setRole(null);
  $("open-register").disabled = true;
  stopLive();
  setLink("off", rejected ? "Token rejected" : "Not connected");
  $("token-why").textContent = rejected
    ? "The gateway rejected this token (401). Enter a valid API token."
    : "An API token is needed to read the gateway: open the link the gateway printed, or paste a token.";
  $("token-why").classList.toggle("problem", rejected);
  $("token-panel").hidden = false;
  $("token-input").focus();
}
$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("token-input").value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token-input").value = "";
  connect(token).catch(report);
});
$("change-token").addEventListener("click", () => {
  if (S.authed && !$("token-panel").hidden) { $("token-panel").hidden = true; return; }
  $("token-why").textContent = "Replace the token this tab uses.";
  $("token-why").classList.remove("problem");
  $("token-panel").hidden = false;
  $("token-input").focus();
});
// Viewers see no action that changes the configuration or sets a value, operators only the
// values to set (the gateway would refuse the rest anyway). A gateway that says its writes are
// off (me.writes false) shows no input either.
function setRole(me) {
  const role = me ? me.role : null;
  S.admin = role === "admin";
  S.write = (role === "admin" || role === "operator") && me.writes !== false;
  $("open-register").hidden = !S.admin;
  document.body.classList.toggle("can-write", S.write);
}

// -- devices ---------------------------------------------------------------------------------
function tagDefs(data) {
  const groups = data.config.groups || (S.profiles.get(data.profile) || { config: {} }).config.groups || [];
  const defs = new Map();
  for (const group of groups) for (const tag of group.tags || []) {
    if (defs.has(tag.name)) continue;
    const scaled = (tag.scale != null && tag.scale !== 1) || (tag.offset != null && tag.offset !== 0);
    defs.set(tag.name, { name: tag.name, unit: tag.unit || "", float: /^float/.test(tag.data_type || "") || scaled, config: tag });
  }
  return [...defs.values()];
}

class Device {
  constructor(data) {
    this.id = data.id;
    this.tags = new Map();
    this.visible = false; this.stale = false; this.latestAt = 0; this.historyAt = 0; this.statusAt = 0;
    this.el = h("article", { class: "card", "data-device": data.id });
    this.head = h("h2", {}, h("button", { class: "open", type: "button", title: `${data.id}: history and settings`, onclick: () => this.open() },
      data.id, h("span", { class: "chevron", "aria-hidden": "true", text: " ›" })));
    this.badge = h("span", { class: "badge" });
    this.where = h("span", { class: "where" });
    this.source = h("span", { class: "source" });
    this.meta = h("p", { class: "meta" }, this.where, this.source);
    this.labels = h("ul", { class: "labels" });
    this.status = h("p", { class: "status" });
    this.rows = h("div", { class: "tags" });
    this.stats = h("span", { class: "stats" });
    this.more = h("button", { class: "more", type: "button", onclick: () => this.toggle() });
    this.el.append(
      h("div", { class: "head" }, this.head, this.badge), this.meta, this.labels, this.status,
      this.rows, h("div", { class: "foot" }, this.stats, this.more),
    );
    this.update(data);
  }

  update(data) {
    this.data = data;
    const shape = `${JSON.stringify(data.config)}\n${S.profileShapes.get(data.profile) || ""}`;
    if (shape !== this.shape) {
      this.shape = shape;
      this.where.textContent = `${data.profile || "own tags"} · ${data.address}`;
      this.where.title = this.where.textContent;
      this.source.textContent = data.source === "file" ? "file" : "API";
      this.source.title = data.source === "file" ? "Defined in the config file (read-only here)" : "Registered over the API";
      const labels = Object.entries(data.labels).map(([k, v]) => `${k}=${v}`);
      this.labels.replaceChildren(...(labels.length ? labels.map((l) => h("li", { text: l })) : [h("li", { class: "none", text: "no labels" })]));
      this.labels.title = labels.join(", ");
      this.haystack = [data.id, data.profile || "", data.config.host || "", data.config.endpoint || "", ...labels].join(" ").toLowerCase();
      this.setTags(tagDefs(data));
    }
    this.setStatus(data.status);
  }

  setStatus(st) {
    const changed = st.state !== this.state;
    if (changed) { this.state = st.state; this.el.dataset.state = st.state; }
    this.data.status = st;
    setText(this.badge, st.state, st.last_error ? `${st.state}: ${st.last_error}` : st.state);
    let line;
    if (st.state === "disabled") line = "Disabled: not polled";
    else if (st.state === "starting") line = "Connecting…";
    else if (st.last_error && st.state !== "online") line = st.last_error;
    else line = st.last_good_read ? `Last good read ${clock.format(st.last_good_read)}` : "No read yet";
    setText(this.status, line, st.last_error ? `Last error: ${st.last_error}` : line);
    setText(this.stats, `${ints.format(st.polls)} polls · ${ints.format(st.request_errors)} errors · ${st.last_poll_duration_ms.toFixed(1)} ms/poll`);
    if (changed) refreshDeviceView(this);
    return changed;
  }

  setTags(defs) {
    const old = this.tags;
    this.tags = new Map();
    for (const def of defs) this.addTag(def, old.get(def.name));
    this.rows.replaceChildren(...[...this.tags.values()].map((t) => t.row));
    this.layoutTags();
    for (const tag of this.tags.values()) S.dirty.add(tag);
    schedule();
  }

  addTag(def, previous) {
    const tag = previous || { device: this, name: def.name, value: undefined, quality: null, reason: null, ts: 0, series: [], shown: null };
    tag.unit = def.unit;
    tag.float = Boolean(def.float);
    tag.config = def.config || null;
    const writable = Boolean(tag.config && tag.config.writable);
    tag.valueEl = h("span", { class: "value pending", text: "—" });
    tag.spark = svg("svg", { viewBox: "0 0 100 20", preserveAspectRatio: "none", "aria-hidden": "true" });
    tag.row = h("div", { class: writable ? "tag writable" : "tag", "data-tag": def.name },
      h("button", { class: "name", type: "button", text: def.name, title: `${def.name}: open its history${writable ? " (writable)" : ""}`, onclick: () => this.open(def.name) }),
      tag.valueEl, h("span", { class: "unit", text: def.unit }), h("span", { class: "trend" }, tag.spark));
    tag.shown = null;
    this.tags.set(def.name, tag);
    if (tag.series.length) S.sparkDirty.add(tag);
    return tag;
  }

  layoutTags() {
    let index = 0;
    for (const tag of this.tags.values()) tag.row.classList.toggle("extra", index++ >= COLLAPSED_TAGS);
    const hidden = this.tags.size - COLLAPSED_TAGS;
    this.more.hidden = hidden <= 0;
    this.more.textContent = this.el.classList.contains("open") ? "Show fewer" : `Show all ${this.tags.size} tags`;
  }

  toggle() {
    this.el.classList.toggle("open");
    this.layoutTags();
    if (this.el.classList.contains("open")) loadHistory(this, true).catch(report);
  }

  open(tagName) {
    openDevice(this, { tag: tagName, admin: S.admin, write: S.write, onChanged: upsert, onDeleted: removeDevice, profiles: S.profiles }).catch(report);
  }

  shownTags() {
    const all = [...this.tags.values()];
    return this.el.classList.contains("open") ? all : all.slice(0, COLLAPSED_TAGS);
  }

  set(name, value, quality, reason, ts) {
    let tag = this.tags.get(name);
    if (!tag) {
      tag = this.addTag({ name, unit: "" });
      this.rows.append(tag.row);
      this.layoutTags();
    }
    if (ts < tag.ts) return;
    tag.value = value; tag.quality = quality; tag.reason = reason; tag.ts = ts;
    if (isNumeric(value) && quality !== "bad") addPoint(tag, ts, Number(value));
    S.dirty.add(tag);
  }
}

function renderTag(tag) {
  const el = tag.valueEl;
  const { text, kind, title } = describeValue(tag);
  const key = `${kind}|${text}|${title}`;
  if (key === tag.shown) return;
  tag.shown = key;
  el.className = kind;
  el.title = title;
  tag.row.classList.toggle("long", text.length > LONG_VALUE);
  if (kind.endsWith("bool")) el.replaceChildren(h("span", { class: `chip ${text}`, text }));
  else el.textContent = text;
}

// -- sparklines ------------------------------------------------------------------------------
function addPoint(tag, ts, value) {
  const bucket = Math.floor(ts / (SPARK_BUCKET * 1000)) * SPARK_BUCKET * 1000;
  const series = tag.series;
  const last = series[series.length - 1];
  if (last && last.t === bucket) {
    last.n = (last.n || 1) + 1;
    last.v += (value - last.v) / last.n;
    last.lo = Math.min(last.lo, value); last.hi = Math.max(last.hi, value);
  } else if (!last || bucket > last.t) {
    series.push({ t: bucket, v: value, lo: value, hi: value, n: 1 });
    while (series.length && series[0].t < bucket - SPARK_WINDOW) series.shift();
  }
  S.sparkDirty.add(tag);
}
function drawSpark(tag) {
  const points = tag.series;
  if (points.length < 2) { tag.spark.replaceChildren(); return; }
  const t0 = points[0].t, span = Math.max(points[points.length - 1].t - t0, 1);
  let lo = Infinity, hi = -Infinity;
  for (const p of points) { lo = Math.min(lo, p.lo ?? p.v); hi = Math.max(hi, p.hi ?? p.v); }
  if (hi - lo < 1e-9) { const pad = Math.abs(hi) * 0.05 || 1; lo -= pad; hi += pad; }
  const x = (t) => ((t - t0) / span * 100).toFixed(2);
  const y = (v) => (18.5 - (v - lo) / (hi - lo) * 17).toFixed(2);
  const line = points.map((p, i) => `${i ? "L" : "M"}${x(p.t)} ${y(p.v)}`).join("");
  const upper = points.map((p, i) => `${i ? "L" : "M"}${x(p.t)} ${y(p.hi ?? p.v)}`).join("");
  const lower = points.map((p) => `L${x(p.t)} ${y(p.lo ?? p.v)}`).reverse().join("");
  tag.spark.replaceChildren(svg("path", { class: "band", d: `${upper}${lower}Z` }), svg("path", { class: "line", d: line }));
}
async function loadHistory(device, force) {
  if (S.historyOff || (!force && Date.now() - device.historyAt < HISTORY_EVERY)) return;
  const tags = device.shownTags().filter((t) => isNumeric(t.value));
  if (!tags.length) return;
  device.historyAt = Date.now();
  const start = Date.now() - SPARK_WINDOW;
  await Promise.all(tags.map((tag) => queued(async () => {
    try {
      const body = await api(`${dev(device.id)}/tags/${encodeURIComponent(tag.name)}/history?start=${start}&bucket=${SPARK_BUCKET}`);
      const live = tag.series.filter((p) => p.t > (body.points.length ? body.points[body.points.length - 1].ts : 0));
      tag.series = body.points.map((p) => ({ t: p.ts, v: p.value, lo: p.min ?? p.value, hi: p.max ?? p.value })).concat(live);
      S.sparkDirty.add(tag);
    } catch (error) {
      if (error instanceof ApiError && (error.problem.errors || []).some((e) => e.field === "history.enabled")) S.historyOff = true;
      else if (!(error instanceof ApiError && error.status === 404)) throw error;
    }
  })));
}
async function loadLatest(device) {
  device.latestAt = Date.now();
  try {
    const body = await queued(() => api(`${dev(device.id)}/latest`));
    for (const [name, v] of Object.entries(body.values)) device.set(name, v.value, v.quality, v.reason, v.ts);
    schedule();
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
  }
}
async function cameIntoView(device) {
  if (device.stale) { device.stale = false; for (const tag of device.tags.values()) S.dirty.add(tag), S.sparkDirty.add(tag); schedule(); }
  if (!device.latestAt) await loadLatest(device);
  await loadHistory(device, false);
}
const seen = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    const device = S.devices.get(entry.target.dataset.device);
    if (!device) continue;
    device.visible = entry.isIntersecting;
    if (device.visible && S.authed) cameIntoView(device).catch(report);
  }
}, { rootMargin: "200px 0px" });

// -- rendering: batched into animation frames, only what changed and is on screen ------------
function schedule() { if (!S.frame) S.frame = requestAnimationFrame(flush); }
function flush() {
  S.frame = 0;
  for (const tag of S.dirty) {
    if (tag.device.visible) renderTag(tag); else tag.device.stale = true;
  }
  S.dirty.clear();
}
function drawSparks() {
  for (const tag of S.sparkDirty) {
    if (tag.device.tags.get(tag.name) !== tag || !S.devices.has(tag.device.id)) S.sparkDirty.delete(tag);
    else if (tag.device.visible) { drawSpark(tag); S.sparkDirty.delete(tag); }
  }
}

// -- list, states, filter --------------------------------------------------------------------
async function loadProfiles() {
  const list = await api("/api/v1/profiles");
  S.profiles = new Map(list.map((p) => [p.id, p]));
  S.profileShapes = new Map(list.map((p) => [p.id, JSON.stringify(p.config)]));
}
function refreshDevices() {  // one listing at a time, however often it is asked for
  if (!S.listing) S.listing = listDevices().finally(() => { S.listing = null; });
  return S.listing;
}
async function listDevices() {
  const items = [];
  for (let offset = 0; ; offset += 1000) {
    const page = await api(`/api/v1/devices?limit=1000&offset=${offset}`);
    items.push(...page.items);
    if (items.length >= page.total || !page.items.length) break;
  }
  if (items.some((d) => d.profile && !S.profiles.has(d.profile))) await loadProfiles();
  const ids = new Set(items.map((d) => d.id));
  for (const id of [...S.devices.keys()]) if (!ids.has(id)) forget(id);
  let previous = null;
  for (const data of items) {
    let device = S.devices.get(data.id);
    if (device) device.update(data);
    else {
      device = new Device(data);
      S.devices.set(data.id, device);
      seen.observe(device.el);
    }
    const expected = previous ? previous.el.nextSibling : $("grid").firstChild;
    if (expected !== device.el) $("grid").insertBefore(device.el, expected);
    previous = device;
  }
  applyFilter();
}
function upsert(data) {
  let device = S.devices.get(data.id);
  if (device) device.update(data);
  else {
    device = new Device(data);
    S.devices.set(data.id, device);
    $("grid").append(device.el);
    seen.observe(device.el);
  }
  applyFilter();
  return device;
}
function forget(id) {
  const device = S.devices.get(id);
  seen.unobserve(device.el);
  device.el.remove();
  S.devices.delete(id);
}
function removeDevice(id) {
  if (S.devices.has(id)) forget(id);
  applyFilter();
}
async function refreshStatus(device) {
  if (Date.now() - device.statusAt < 1000) return;
  device.statusAt = Date.now();
  try {
    if (device.setStatus(await api(`${dev(device.id)}/status`))) applyFilter();
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) throw error;
  }
}

function buildStateButtons() {
  const all = h("button", { type: "button", "data-filter": "", "aria-pressed": "true", onclick: () => setStateFilter(null) }, "All", h("b"));
  const buttons = STATES.map((state) => h("button", { type: "button", "data-filter": state, "data-state": state, "aria-pressed": "false", onclick: () => setStateFilter(state) },
    h("span", { class: "dot" }), state, h("b")));
  $("states").replaceChildren(all, ...buttons);
}
function setStateFilter(state) {
  S.stateFilter = S.stateFilter === state ? null : state;
  applyFilter();
}
function applyFilter() {
  const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
  let shown = 0;
  for (const device of S.devices.values()) {
    counts[device.state] = (counts[device.state] || 0) + 1;
    const match = (!S.stateFilter || device.state === S.stateFilter) && S.filterTerms.every((t) => device.haystack.includes(t));
    if (device.el.hidden === match) device.el.hidden = !match;
    if (match) shown++;
  }
  for (const button of $("states").children) {
    const state = button.dataset.filter;
    const n = state ? counts[state] : S.devices.size;
    button.dataset.count = n;
    setText(button.querySelector("b"), String(n));
    button.setAttribute("aria-pressed", String((state || null) === S.stateFilter));
  }
  const total = S.devices.size;
  $("count").textContent = shown === total ? "" : `${shown} of ${total}`;
  $("empty").hidden = shown > 0 || !S.authed;
  $("empty").textContent = total ? "No device matches this filter." : S.admin ? "No devices yet: register one." : "No devices yet.";
}
$("filter").addEventListener("input", (event) => {
  S.filterTerms = event.target.value.toLowerCase().split(/\s+/).filter(Boolean);
  applyFilter();
});
document.addEventListener("keydown", (event) => {
  if (event.key === "/" && !/^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName) && !document.querySelector("dialog[open]")) {
    event.preventDefault(); $("filter").focus();
  }
});

// -- the live stream: fetch() with a reader, since EventSource cannot send the token ----------
function setLink(state, text) {
  $("link").dataset.state = state;
  $("link").textContent = text;
}
async function streamLoop(control) {
  let delay = 1000, connectedBefore = false;
  while (!control.signal.aborted) {
    try {
      setLink("connecting", connectedBefore ? "Reconnecting…" : "Connecting…");
      const response = await fetch("/api/v1/stream", { headers: { Authorization: `Bearer ${session.token}` }, signal: control.signal, cache: "no-store" });
      if (response.status === 401) { askToken(true); return; }
      if (!response.ok) throw new Error(`stream: HTTP ${response.status}`);
      setLink("live", "Live");
      if (connectedBefore) resync();
      connectedBefore = true; delay = 1000;
      await readEvents(response.body, (type, data) => { if (type === "telemetry") onTelemetry(parseJson(data)); });
    } catch (error) {
      if (control.signal.aborted) return;
      console.warn("live stream interrupted:", error);
    }
    if (control.signal.aborted) return;
    setLink("retry", "Reconnecting…");
    await sleep(delay * (0.5 + Math.random()));
    delay = Math.min(delay * 2, 10000);
  }
}
async function readEvents(body, dispatch) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "", type = "", data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    const lines = buffer.split("\n");
    buffer = lines.pop();
    for (const raw of lines) {
      const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
      if (line === "") {
        if (data.length) dispatch(type || "message", data.join("\n"));
        type = ""; data = [];
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") type = text;
        else if (field === "data") data.push(text);
      }
    }
  }
}
let listSoon = 0;
function onTelemetry(event) {
  if (event.missed) { resync(); return; }
  const device = S.devices.get(event.device);
  if (!device) {  // registered elsewhere: pick it up soon, not on every event
    if (!listSoon) listSoon = setTimeout(() => { listSoon = 0; refreshDevices().catch(report); }, 1000);
    return;
  }
  for (const name in event.values) device.set(name, event.values[name], "good", null, event.ts);
  for (const name in event.bad || {}) device.set(name, undefined, "bad", event.bad[name], event.ts);
  if (device.state === "starting" || device.state === "offline") refreshStatus(device).catch(report);
  refreshDeviceView(device);
  schedule();
}
function resync() {
  refreshDevices().catch(report);
  for (const device of S.devices.values()) {
    device.latestAt = 0;
    if (device.visible) loadLatest(device).catch(report);
  }
}
function stopLive() {
  if (S.stream) { S.stream.abort(); S.stream = null; }
  for (const timer of S.timers) clearInterval(timer);
  S.timers = [];
}
function report(error) {
  if (error instanceof AuthError) return;
  console.warn(error);
}

async function connect(token) {
  stopLive();
  session.token = token;
  S.authed = true;
  setLink("connecting", "Connecting…");
  for (let delay = 1000; ; delay = Math.min(delay * 2, 10000)) {
    try {
      const [me, protocols] = await Promise.all([api("/api/v1/me"), api("/api/v1/protocols")]);
      setRole(me);
      S.discoverable = new Set(protocols.filter((p) => p.discover).map((p) => p.type));
      await loadProfiles();
      await refreshDevices();
      break;
    } catch (error) {
      if (error instanceof AuthError || session.token !== token) return;
      report(error);
      setLink("retry", "Gateway unreachable");
      await sleep(delay);
      if (session.token !== token || !S.authed) return;
    }
  }
  $("token-panel").hidden = true;
  $("open-register").disabled = false;
  S.stream = new AbortController();
  streamLoop(S.stream).catch(report);
  S.timers.push(
    setInterval(() => { if (S.authed) refreshDevices().catch(report); }, STATUS_EVERY),
    setInterval(() => {
      drawSparks();
      for (const device of S.devices.values()) if (device.visible && S.authed) loadHistory(device, false).catch(report);
    }, 1000),
  );
  for (const device of S.devices.values()) if (device.visible) cameIntoView(device).catch(report);
}

// -- register a device -----------------------------------------------------------------------
// From a profile, or (for a protocol whose servers can be browsed) with its own tags, picked
// from the server: one subscription group of the picked variables.
const FIELDS = ["profile", "id", "groups", "interval", "labels"];  // and each protocol's fields, once loaded
function clearErrors() {
  $("form-problem").textContent = "";
  for (const name of FIELDS) { $(`err-${name}`).textContent = ""; $(`f-${name}`).removeAttribute("aria-invalid"); }
}
function fieldError(name, message) {
  const el = $(`err-${name}`);
  el.textContent = el.textContent ? `${el.textContent}; ${message}` : message;
  $(`f-${name}`).setAttribute("aria-invalid", "true");
}
async function loadProtocols() {
  if (S.protocols) return;
  const list = await api("/api/v1/protocols");
  S.protocols = new Map(list.map((p) => [p.type, p]));
  const byName = new Map();  // a field two protocols share (a host...) is one input
  for (const protocol of list) for (const field of protocol.fields) {
    if (byName.has(field.name)) byName.get(field.name).types.push(protocol.type);
    else byName.set(field.name, { ...field, types: [protocol.type] });
  }
  const anchor = $("tags-field");
  for (const field of byName.values()) {
    const label = field.name.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());
    const numeric = { integer: "numeric", number: "decimal" }[field.kind];
    anchor.before(h("div", { class: field.kind === "string" ? "field wide" : "field", "data-for": field.types.join(" "), hidden: true },
      h("label", { for: `f-${field.name}`, text: label }),
      h("input", { id: `f-${field.name}`, name: field.name, placeholder: field.placeholder, inputmode: numeric, autocomplete: "off", "aria-describedby": `err-${field.name}` }),
      h("span", { id: `err-${field.name}`, class: "field-error" })));
    FIELDS.push(field.name);
  }
}
// The chosen entry of the first select: a profile, or a protocol's own tags.
function choice() {
  const option = $("f-profile").selectedOptions[0];
  if (!option) return null;
  if (option.dataset.own) return { type: option.dataset.own, profile: null };
  const profile = S.profiles.get(option.value);
  return profile ? { type: profile.type, profile } : null;
}
function showProtocolFields() {
  const chosen = choice();
  const type = chosen && chosen.type;
  for (const el of document.querySelectorAll("[data-for]")) el.hidden = !el.dataset.for.split(" ").includes(type);
  const own = Boolean(chosen && !chosen.profile);
  $("tags-field").hidden = !own;
  $("interval-field").hidden = !own;
}
function showPicked() {
  const names = S.picked.map((v) => v.tag.name);
  $("picked-summary").textContent = names.length
    ? `${names.length} tag${names.length > 1 ? "s" : ""}: ${names.slice(0, 4).join(", ")}${names.length > 4 ? ", …" : ""}`
    : "None picked yet: browse the server and tick the variables to read.";
  $("picked-summary").title = names.join("\n");
  $("f-groups").textContent = names.length ? "Change…" : "Browse the server…";
}
$("f-profile").addEventListener("change", () => { S.picked = []; showPicked(); showProtocolFields(); });
$("open-register").addEventListener("click", async () => {
  clearErrors();
  try { await Promise.all([loadProfiles(), loadProtocols()]); } catch (error) { report(error); if (error instanceof AuthError) return; }
  const select = $("f-profile"), kept = select.value;
  const tagCount = (p) => (p.config.groups || []).reduce((n, g) => n + (g.tags || []).length, 0);
  const profiles = [...S.profiles.values()].map((p) => h("option", { value: p.id, text: `${p.id} — ${p.type}, ${tagCount(p)} tags` }));
  const own = [...S.discoverable].filter((type) => S.protocols.has(type))
    .map((type) => h("option", { value: `own:${type}`, "data-own": type, text: `${type} — own tags, picked from the server` }));
  select.replaceChildren(
    ...(profiles.length ? [h("optgroup", { label: "From a profile" }, profiles)] : []),
    ...(own.length ? [h("optgroup", { label: "Own tags" }, own)] : []));
  if ([...select.options].some((o) => o.value === kept)) select.value = kept;
  const none = !select.options.length;
  $("form-problem").textContent = none ? "No profile is defined yet: add one to the config file or POST /api/v1/profiles." : "";
  $("submit-register").disabled = none;
  showProtocolFields();
  showPicked();
  $("register").showModal();
  $("f-id").focus();
});
$("cancel-register").addEventListener("click", () => $("register").close());

function formBody() {
  const value = (name) => $(`f-${name}`).value.trim();
  const number = (name) => (/^\d+$/.test(value(name)) ? Number(value(name)) : value(name));
  const { type, profile } = choice();
  const body = { id: value("id"), type, labels: {} };
  if (profile) body.profile = profile.id;
  else {
    if (!S.picked.length) return { problem: ["groups", "pick at least one variable from the server"] };
    const interval = /^\d+(\.\d+)?$/.test(value("interval")) ? Number(value("interval")) : value("interval");
    body.groups = [{ name: "picked", interval, tags: S.picked.map((v) => v.tag) }];
  }
  const protocol = S.protocols && S.protocols.get(type);
  for (const field of protocol ? protocol.fields : []) {
    if (value(field.name)) body[field.name] = field.kind === "string" ? value(field.name) : number(field.name);
  }
  for (const pair of value("labels").split(/[,\n]/).map((s) => s.trim()).filter(Boolean)) {
    const at = pair.indexOf("=");
    if (at < 1) return { problem: ["labels", `"${pair}" is not key=value`] };
    body.labels[pair.slice(0, at).trim()] = pair.slice(at + 1).trim();
  }
  return { body };
}
$("f-groups").addEventListener("click", async () => {
  const { type } = choice();
  const protocol = S.protocols.get(type);
  const connection = {};
  for (const field of protocol.fields) {
    const text = $(`f-${field.name}`).value.trim();
    if (text) connection[field.name] = field.kind === "string" || !/^\d+(\.\d+)?$/.test(text) ? text : Number(text);
  }
  clearErrors();
  const picked = await pickTags({ type, connection, picked: S.picked, fieldError });
  if (picked) { S.picked = picked; showPicked(); }
});
$("register-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors();
  const { body, problem } = formBody();
  if (problem) { fieldError(...problem); $(`f-${problem[0]}`).focus(); return; }
  const submit = $("submit-register");
  submit.disabled = true;
  try {
    const created = await api("/api/v1/devices", { method: "POST", body });
    $("register").close();
    $("register-form").reset();
    S.picked = [];
    const device = upsert(created);
    device.el.classList.add("new");
    device.el.addEventListener("animationend", () => device.el.classList.remove("new"), { once: true });
    device.el.scrollIntoView({ block: "nearest", behavior: "smooth" });
    toast(device.el.hidden ? `Registered ${created.id} (hidden by the filter)` : `Registered ${created.id}: polling starts now`);
  } catch (error) {
    if (error instanceof AuthError) { $("register").close(); return; }
    if (!(error instanceof ApiError) || error.status === 403) { $("form-problem").textContent = refusal(error, "registering a device"); return; }
    showProblem(error);
  } finally {
    submit.disabled = false;
  }
});
function showProblem(error) {
  const problems = error.fields();
  const lead = /^([a-z_]+): (.*)$/.exec(error.problem.detail || "");
  if (!problems.length && lead) problems.push([lead[1], lead[2]]);
  const general = [];
  for (const [field, message] of problems) {
    const name = field.split(/[.[]/)[0];
    if (FIELDS.includes(name) && !$(`f-${name}`).closest("[hidden]")) fieldError(name, field === name ? message : `${field}: ${message}`);
    else general.push(`${field}: ${message}`);
  }
  if (general.length || !problems.length) $("form-problem").textContent = general.join("; ") || error.message;
  const first = FIELDS.find((name) => $(`f-${name}`).getAttribute("aria-invalid"));
  if (first) $(`f-${first}`).focus();
}

// -- start -----------------------------------------------------------------------------------
buildStateButtons();
applyFilter();
const token = readToken();
if (token) connect(token).catch(report); else askToken(false);
window.addEventListener("hashchange", () => {  // a #token=... link opened in this same tab
  if (!/(?:^#|&)token=/.test(location.hash)) return;
  const given = readToken();
  if (given !== session.token || !S.authed) connect(given).catch(report);
});
