// The device view: a tag's history as a chart (15 min, 1 h, 24 h from the local history); for
// operators and admins, its writable tags' values to set (write.js); for admins, the device's
// actions: edit, disable/enable, delete. Each confirmed first.
import {
  $, h, setText, clock, describeValue, formatNumber, isNumeric, ApiError, api, dev, refusal,
  confirmStep, toast, closeOnBackdrop,
} from "./lib.js";
import { openEdit } from "./edit.js";
import { showWrites } from "./write.js";
import { hideEvents, showEvents } from "./events.js";

// Buckets that make each range a few hundred points (the history keeps at most one sample per
// tag per history.min_interval, 5 s by default).
const RANGES = [
  { label: "15 min", span: 900, bucket: 5 },
  { label: "1 h", span: 3600, bucket: 15 },
  { label: "24 h", span: 86400, bucket: 300 },
];
const REFRESH_MAX = 60;  // s: the chart reloads every bucket, at least this often
const ACCENT = "#0b5cad";

const view = { device: null, ctx: null, tag: null, range: RANGES[0], plot: null, stats: null, timer: 0, loading: 0 };

let uplot = null;  // the library, loaded with its styles when a chart is first shown
function loadUplot() {
  uplot ??= new Promise((resolve, reject) => {
    document.head.append(h("link", { rel: "stylesheet", href: "/static/uPlot.min.css" }));
    document.head.append(h("script", {
      src: "/static/uPlot.iife.min.js",
      onload: () => resolve(window.uPlot),
      onerror: () => { uplot = null; reject(new Error("the chart library did not load")); },
    }));
  });
  return uplot;
}

export async function openDevice(device, ctx) {
  view.device = device; view.ctx = ctx;
  $("device-problem").textContent = "";
  const names = [...device.tags.keys()];
  const charted = names.filter((name) => chartable(device.tags.get(name)));
  view.tag = ctx.tag && names.includes(ctx.tag) ? ctx.tag : charted[0] || names[0] || null;
  $("chart-tag").replaceChildren(...names.map((name) => h("option", { value: name, text: name })));
  if (view.tag) $("chart-tag").value = view.tag;
  refreshDeviceView(device, true);
  showEvents(device, ctx.write);
  if (!$("device").open) $("device").showModal();
  await draw();
}

// Called on every change of a device (status, values): cheap unless its view is open.
export function refreshDeviceView(device, full = false) {
  if (view.device !== device || (!full && !$("device").open)) return;
  const data = device.data;
  const ctx = view.ctx;
  $("device-title").textContent = data.id;
  $("device").dataset.state = data.status.state;
  setText($("device-badge"), data.status.state, data.status.last_error || data.status.state);
  const status = data.status.last_error && data.status.state !== "online" ? ` · ${data.status.last_error}` : "";
  $("device-where").textContent = `${data.profile || "own tags"} · ${data.address}${status}`;
  const own = data.source !== "file";
  $("device-actions").hidden = !(ctx.admin && own);
  $("act-toggle").textContent = data.enabled ? "Disable" : "Enable";
  $("device-readonly").hidden = own && ctx.admin;
  $("device-readonly").textContent = !own
    ? "Defined in the configuration file: its settings are read-only here (edit the file to change them)."
    : ctx.write
      ? "This token may set values: changes to the device need an admin token."
      : "This token may only read: changes need an admin token.";
  showWrites(device, ctx.write, full);
  showStats();
}

function chartable(tag) {
  return tag && (isNumeric(tag.value) || typeof tag.value === "boolean");
}

// -- the chart -------------------------------------------------------------------------------
function buildRanges() {
  $("chart-ranges").replaceChildren(...RANGES.map((range) => h("button", {
    type: "button", text: range.label, "data-range": range.label, "aria-pressed": String(range === view.range),
    onclick: () => { view.range = range; syncRanges(); draw().catch(showError); },
  })));
}
function syncRanges() {
  for (const button of $("chart-ranges").children) button.setAttribute("aria-pressed", String(button.dataset.range === view.range.label));
}
$("chart-tag").addEventListener("change", () => { view.tag = $("chart-tag").value; draw().catch(showError); });

async function draw() {
  clearInterval(view.timer);
  if (!view.tag) { note("This device has no tags."); return; }
  await load();
  view.timer = setInterval(() => load().catch(showError), Math.min(view.range.bucket, REFRESH_MAX) * 1000);
}

async function load() {
  const { device, tag, range } = view;
  const call = ++view.loading;  // a slower answer for an earlier choice is dropped
  const end = Date.now(), start = end - range.span * 1000;
  const [uPlot, body] = await Promise.all([
    loadUplot(),
    api(`${dev(device.id)}/tags/${encodeURIComponent(tag)}/history?start=${start}&end=${end}&bucket=${range.bucket}`)
      .catch((error) => { if (error instanceof ApiError && error.status === 404) return { points: [] }; throw error; }),
  ]);
  if (call !== view.loading || !$("device").open) return;
  const data = series(body.points);
  const chart = $("chart");
  chart.dataset.points = String(body.points.length);
  chart.dataset.range = range.label;
  const state = device.tags.get(tag);
  const key = `${device.id}\n${tag}\n${typeof (state && state.value) === "boolean"}`;
  if (!view.plot || view.plot.key !== key) {
    if (view.plot) view.plot.destroy();
    view.plot = new uPlot(options(uPlot, tag, state), data, chart);
    view.plot.key = key;
  } else view.plot.setData(data);
  view.plot.setScale("x", { min: start / 1000, max: end / 1000 });
  view.stats = body.points;
  note(body.points.length ? "" : `No history of ${tag} in the last ${range.label}: strings and arrays are not kept, and a new tag needs a little time.`);
  showStats();
}

// [time s, mean, min, max], with a break where samples are missing (a device that was offline)
// instead of a line across the gap.
function series(points) {
  const steps = points.slice(1).map((p, i) => p.ts - points[i].ts).sort((a, b) => a - b);
  const gap = 3 * (steps[Math.floor(steps.length / 2)] || 0);
  const xs = [], mean = [], lo = [], hi = [];
  points.forEach((p, i) => {
    if (i && gap && p.ts - points[i - 1].ts > gap) { xs.push((points[i - 1].ts + 1) / 1000); mean.push(null); lo.push(null); hi.push(null); }
    xs.push(p.ts / 1000); mean.push(p.value); lo.push(p.min ?? p.value); hi.push(p.max ?? p.value);
  });
  return [xs, mean, lo, hi];
}

function options(uPlot, tag, state) {
  const chart = $("chart");
  const unit = state && state.unit ? ` ${state.unit}` : "";
  const float = !state || state.float;
  const value = (u, v) => (v == null ? "—" : `${formatNumber(v, float || !Number.isInteger(v))}${unit}`);
  const bool = state && typeof state.value === "boolean";
  const axis = { stroke: "#45515e", grid: { stroke: "#e7ebef", width: 1 }, ticks: { stroke: "#d2d8df", width: 1 }, font: "12px system-ui, sans-serif" };
  return {
    width: chart.clientWidth,
    height: chartHeight(),
    scales: { x: { time: true } },
    series: [
      { value: (u, v) => (v == null ? "—" : clock.format(v * 1000)) },
      // Points show by themselves where samples are sparse (a constant, or a new tag).
      { label: tag, stroke: ACCENT, width: 1.6, value, ...(bool ? { paths: uPlot.paths.stepped({ align: 1 }) } : {}) },
      { label: "min", stroke: "rgba(11, 92, 173, .35)", width: 1, value, points: { show: false } },
      { label: "max", stroke: "rgba(11, 92, 173, .35)", width: 1, value, points: { show: false } },
    ],
    bands: [{ series: [3, 2], fill: "rgba(11, 92, 173, .12)" }],
    axes: [axis, { ...axis, size: labelWidth, values: (u, ticks) => ticks.map(tickLabel) }],
  };
}
const tickFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 6 });
const tickLabel = (v) => (Math.abs(v) >= 1e9 ? formatNumber(v, true) : tickFormat.format(v));
// The value axis is as wide as its longest label (7.2 px per character of its 12 px font).
const labelWidth = (u, labels) => (labels ? Math.ceil(Math.max(3, ...labels.map((l) => l.length)) * 7.2) + 20 : 50);
const chartHeight = () => (window.innerWidth < 600 ? 240 : 340);
new ResizeObserver(() => {
  if (view.plot && $("device").open) view.plot.setSize({ width: $("chart").clientWidth, height: chartHeight() });
}).observe($("chart"));

function showStats() {
  const tag = view.device && view.device.tags.get(view.tag);
  if (!tag) { $("chart-stats").replaceChildren(); return; }
  const now = describeValue(tag);
  const points = view.stats || [];
  const lows = points.map((p) => p.min ?? p.value), highs = points.map((p) => p.max ?? p.value);
  const fmt = (v) => `${formatNumber(v, tag.float || !Number.isInteger(v))}${tag.unit ? ` ${tag.unit}` : ""}`;
  const items = [["Now", `${now.text}${tag.unit && isNumeric(tag.value) ? ` ${tag.unit}` : ""}`, now.title]];
  if (points.length) {
    items.push(["Min", fmt(Math.min(...lows))], ["Max", fmt(Math.max(...highs))]);
    items.push(["Points", `${points.length} × ${view.range.bucket} s`]);
  }
  $("chart-stats").replaceChildren(...items.map(([term, text, title]) => h("div", { class: term === "Now" ? "now" : null },
    h("dt", { text: term }), h("dd", { text, title: title || text }))));
}

function note(text) {
  $("chart-note").textContent = text;
  $("chart-note").hidden = !text;
}
function showError(error) {
  $("device-problem").textContent = refusal(error, "this");
}

function close() {
  clearInterval(view.timer);
  hideEvents();
  view.loading++;
  if (view.plot) { view.plot.destroy(); view.plot = null; }
  view.device = null; view.stats = null;
}
$("device").addEventListener("close", close);
$("device-close").addEventListener("click", () => $("device").close());
closeOnBackdrop($("device"));

// -- actions ---------------------------------------------------------------------------------
async function act(what, run) {
  $("device-problem").textContent = "";
  try {
    await run();
  } catch (error) {
    $("device-problem").textContent = refusal(error, what);
  }
}
$("act-toggle").addEventListener("click", () => {
  const { device, ctx } = view;
  const enable = !device.data.enabled;
  act(enable ? "enabling a device" : "disabling a device", async () => {
    const yes = await confirmStep(enable
      ? { title: `Enable ${device.id}?`, text: "The gateway connects to it and polls it again.", action: "Enable" }
      : { title: `Disable ${device.id}?`, text: "The gateway stops polling it and publishes it as disabled; its configuration is kept.", action: "Disable" });
    if (!yes) return;
    const data = await api(`${dev(device.id)}/${enable ? "enable" : "disable"}`, { method: "POST" });
    ctx.onChanged(data);
    refreshDeviceView(device);
    toast(`${device.id} ${enable ? "enabled" : "disabled"}`);
  });
});
$("act-delete").addEventListener("click", () => {
  const { device, ctx } = view;
  act("deleting a device", async () => {
    const yes = await confirmStep({
      title: `Delete ${device.id}?`,
      text: "The gateway stops polling it, publishes it offline and forgets it. This cannot be undone.",
      action: "Delete", danger: true,
    });
    if (!yes) return;
    await api(dev(device.id), { method: "DELETE" });
    $("device").close();
    ctx.onDeleted(device.id);
    toast(`Deleted ${device.id}`);
  });
});
$("act-edit").addEventListener("click", () => {
  const { device, ctx } = view;
  act("editing a device", async () => {
    const data = await openEdit(device.data, ctx.profiles);
    if (!data) return;
    ctx.onChanged(data);
    await openDevice(device, { ...ctx, tag: view.tag });  // its tags may have changed
    toast(`Saved ${device.id}: its connector restarts with the change`);
  });
});

buildRanges();
