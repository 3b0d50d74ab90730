// What every module of the page shares: building elements, formatting values, exact JSON, the
// API client, and the confirmation step and notices. No framework, no build step.

export const $ = (id) => document.getElementById(id);

export function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value == null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const kid of kids.flat()) if (kid != null) el.append(kid);
  return el;
}
export function svg(tag, attrs) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, value);
  return el;
}
export function setText(el, text, title) {
  if (el.textContent !== text) el.textContent = text;
  if (title !== undefined && el.title !== title) el.title = title;
}
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
export const humanize = (name) => name.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());

// -- numbers ---------------------------------------------------------------------------------
export const ints = new Intl.NumberFormat("en-US");
const oneDecimal = new Intl.NumberFormat("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const fourDigits = new Intl.NumberFormat("en-US", { minimumSignificantDigits: 4, maximumSignificantDigits: 4, useGrouping: false });
export const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
const exp = (v) => v.toExponential(3).replace("e+", "e");

// Integers are shown exactly, grouped (a BigInt is one beyond 2^53, from parseJson); floats (by
// the tag's data type or scaling, by the value when the config does not say) keep four
// significant digits, so a value does not change width as it moves.
export function formatNumber(v, float) {
  if (typeof v === "bigint") return ints.format(v);
  const a = Math.abs(v);
  if (!float && Number.isInteger(v) && a <= Number.MAX_SAFE_INTEGER) return ints.format(v);
  if (a >= 1e9 || (a < 1e-3 && a > 0)) return exp(v);
  return a >= 1000 ? oneDecimal.format(v) : fourDigits.format(v);
}
export const isNumeric = (v) => typeof v === "number" || typeof v === "bigint";

// The text, class and tooltip of a value, shared by the cards and the device view.
export function describeValue(tag) {
  let text, kind = "value", title = "";
  if (tag.value === undefined && !tag.quality) { text = "—"; kind += " pending"; title = "no value yet"; }
  else if (tag.quality === "bad") { text = "bad"; kind += " bad"; title = tag.reason || "bad quality"; }
  else if (tag.value === null) { text = "—"; title = "not a finite number"; }
  else if (typeof tag.value === "boolean") { text = tag.value ? "on" : "off"; kind += " bool"; }
  else if (isNumeric(tag.value)) { text = formatNumber(tag.value, tag.float); title = String(tag.value); }
  else { text = String(tag.value); kind += " text"; title = text; }
  if (tag.quality === "uncertain") title = `uncertain${tag.reason ? `: ${tag.reason}` : ""}`;
  return { text, kind, title };
}

// -- JSON with exact big integers ------------------------------------------------------------
// JSON.parse turns 18446744073709551615 (a uint64 tag) into 18446744073709552000. Integers
// beyond 2^53 are kept as BigInt from their source text: through the reviver's context.source
// where the browser has it (Chromium 114+, Firefox 135+), else by quoting them with a marker
// before parsing. Texts without a run of 16 digits (most) take the plain, fastest path.
const LONG_DIGITS = /\d{16}/;
const LONG_INTEGER = /"(?:[^"\\]|\\.)*"|(?<![\w.+-])(-?\d{16,})(?![\d.eE])/g;
const MARK = "\uF8FFint:";  // a private-use character: no real value starts with it
const MARKED = /"\uF8FFint:(-?\d+)"/g;
const exact = (digits) => {
  const n = BigInt(digits);
  return n <= BigInt(Number.MAX_SAFE_INTEGER) && n >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
};
const hasSource = (() => {
  let seen = false;
  JSON.parse("1", (key, value, context) => { seen = Boolean(context && context.source === "1"); return value; });
  return seen;
})();

export function parseJson(text) {
  if (!LONG_DIGITS.test(text)) return JSON.parse(text);
  if (!hasSource) return parseQuoted(text);
  return JSON.parse(text, (key, value, context) =>
    (typeof value === "number" && !Number.isSafeInteger(value) && /^-?\d+$/.test(context.source) ? exact(context.source) : value));
}
export function parseQuoted(text) {
  const quoted = text.replace(LONG_INTEGER, (match, digits) => (digits === undefined ? match : `"${MARK}${digits}"`));
  return JSON.parse(quoted, (key, value) => (typeof value === "string" && value.startsWith(MARK) ? exact(value.slice(MARK.length)) : value));
}
export function toJson(value, space) {
  const text = JSON.stringify(value, (key, v) => (typeof v === "bigint" ? `${MARK}${v}` : v), space);
  return text.replace(MARKED, "$1");
}

// -- the API ---------------------------------------------------------------------------------
export class AuthError extends Error {}
export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && problem.detail) || `HTTP ${status}`);
    this.status = status; this.problem = problem || {};
  }
  // The problem's field errors as [field, message] pairs (RFC 7807 body with "errors").
  fields() { return (this.problem.errors || []).map((e) => [e.field, e.message]); }
}
export const session = { token: null, onUnauthorized: () => {} };

// options: method, body (sent with toJson: a BigInt goes out as its exact digits), headers.
export async function api(path, options = {}) {
  const headers = { ...options.headers, Authorization: `Bearer ${session.token}` };
  const init = { method: options.method || "GET", headers, cache: "no-store" };
  if (options.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = toJson(options.body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) { session.onUnauthorized(); throw new AuthError("token rejected"); }
  const text = await response.text();
  let body = null;
  try {
    body = text ? parseJson(text) : null;
  } catch {
    throw new ApiError(response.status, { detail: `HTTP ${response.status}: ${text.slice(0, 160)}` });
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}
export const dev = (id) => `/api/v1/devices/${encodeURIComponent(id)}`;

// What an operator reads when the gateway refuses an action of theirs.
export function refusal(error, action) {
  if (error instanceof ApiError && error.status === 403) return `This token may only read: ${action} needs an admin token.`;
  if (error instanceof ApiError) return error.message;
  return `The gateway did not answer: ${error.message}`;
}

// -- confirmation step and notices -----------------------------------------------------------
// Resolves true when the action is confirmed; Escape, Cancel or a click outside say no. The
// focus starts on Cancel, so an Enter that opened the step does not also confirm it. details:
// [term, text, class] rows shown under the text (what exactly is about to happen).
export function confirmStep({ title, text, action, danger = false, details = [] }) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-details").replaceChildren(...details.map(([term, value, cls]) =>
    h("div", { class: cls }, h("dt", { text: term }), h("dd", { text: value, title: value }))));
  $("confirm-details").hidden = !details.length;
  const yes = $("confirm-yes");
  yes.textContent = action;
  yes.className = danger ? "primary danger" : "primary";
  return new Promise((resolve) => {
    const done = (answer) => {
      yes.removeEventListener("click", onYes);
      dialog.removeEventListener("close", onClose);
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    const onYes = () => done(true);
    const onClose = () => done(false);
    yes.addEventListener("click", onYes);
    dialog.addEventListener("close", onClose);
    dialog.showModal();
    $("confirm-no").focus();
  });
}
$("confirm-no").addEventListener("click", () => $("confirm").close());

let toastTimer = 0;
export function toast(text) {
  $("toast").textContent = text;
  $("toast").hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { $("toast").hidden = true; }, 4000);
}

// A dialog that holds no unsaved input closes when its backdrop is clicked (the backdrop's
// clicks reach the dialog element, outside its box).
export function closeOnBackdrop(dialog) {
  dialog.addEventListener("click", (event) => {
    const box = dialog.getBoundingClientRect();
    const outside = event.clientX < box.left || event.clientX > box.right || event.clientY < box.top || event.clientY > box.bottom;
    if (event.target === dialog && outside) dialog.close();
  });
}
closeOnBackdrop($("confirm"));
