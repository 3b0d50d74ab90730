// Editing a device: a form of its fields, built from the API's own schema of its protocol's
// device (/openapi.json), so the page names no protocol's fields; then a review of the changes;
// then one PATCH (RFC 7396: only what changed; null takes a field back to its default).
// Secrets come back masked: their input starts empty and is sent only when something is typed.
import { $, h, humanize, parseJson, toJson, ApiError, api, dev, refusal } from "./lib.js";

const SKIP = new Set(["id", "type", "enabled"]);  // the title names it; enable/disable are actions
const SPECIAL = new Set(["labels", "profile", "groups"]);
const UNCHANGED = Symbol("unchanged");
class Unreadable {  // what an input holds that cannot be sent, and why
  constructor(problem) { this.problem = problem; }
}
const NUMBER = /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/;

// The schema of the protocol's device, and the fields its registration asks for (they come
// first, always shown: host, port, unit...).
let documents = null;
async function schemaOf(type) {
  documents ??= Promise.all([api("/openapi.json"), api("/api/v1/protocols")]).catch((error) => { documents = null; throw error; });
  const [doc, protocols] = await documents;
  const resolve = (ref) => ref.split("/").slice(1).reduce((node, key) => (node ? node[key] : undefined), doc) || {};
  const body = doc.paths?.["/api/v1/devices"]?.post?.requestBody?.content?.["application/json"]?.schema || {};
  const ref = body.discriminator?.mapping?.[type];
  const protocol = protocols.find((p) => p.type === type);
  return { properties: ref ? resolve(ref).properties || {} : {}, resolve, first: protocol ? protocol.fields.map((f) => f.name) : [] };
}

// What an input needs to know of a field, from its schema (or, without one, from its value).
function specOf(prop, value, resolve) {
  let s = prop || {};
  let nullable = false;
  const choices = s.anyOf || s.oneOf;
  if (choices) {
    const real = choices.filter((c) => c.type !== "null");
    nullable = real.length < choices.length;
    s = real.length === 1 ? real[0] : {};
  }
  if (s.$ref) s = resolve(s.$ref);
  let kind;
  if (s.enum) kind = "choice";
  else if (s.type === "object" && s.properties) kind = "object";
  else if (s.type === "array" || (value !== null && typeof value === "object")) kind = "json";
  else kind = { boolean: "bool", integer: "number", number: "number", string: "text" }[s.type || typeof value] || "text";
  return {
    kind, nullable, choices: s.enum, properties: s.properties,
    secret: s.format === "password" || s.writeOnly === true,
    label: (prop && prop.title) || s.title, hint: (prop && prop.description) || s.description,
    fallback: prop ? prop.default : undefined,
  };
}

const form = { fields: [], data: null, resolve: null, patch: null };

export async function openEdit(data, profiles) {
  const { properties, resolve, first } = await schemaOf(data.type);
  form.data = data; form.patch = null;
  const config = data.config;
  const main = [], more = [];
  const place = (field) => (field.primary ? main : more).push(field.el);
  form.fields = [];
  const keys = [...first.filter((key) => key in config), ...Object.keys(config).filter((key) => !first.includes(key))];
  for (const key of keys) {
    if (SKIP.has(key)) continue;
    if (SPECIAL.has(key)) {
      const field = special(key, config, profiles);
      if (field) { form.fields.push(field); place(field); }
      continue;
    }
    const spec = specOf(properties[key], config[key], resolve);
    if (spec.kind !== "object") {
      const field = scalar([key], spec, config[key], first.includes(key));
      form.fields.push(field); place(field);
      continue;
    }
    const inner = Object.entries(spec.properties).map(([sub, prop]) => scalar([key, sub], specOf(prop, (config[key] || {})[sub], resolve), (config[key] || {})[sub]));
    form.fields.push(...inner);
    const set = h("fieldset", { class: "group" }, h("legend", { text: spec.label || humanize(key) }), inner.map((f) => f.el));
    (inner.some((f) => f.primary) ? main : more).push(set);
  }
  $("edit-title").textContent = `Edit ${data.id}`;
  $("edit-sub").textContent = `${data.type} device · changes apply at once: only this device's connector restarts.`;
  $("edit-fields").replaceChildren(
    h("div", { class: "fields" }, main),
    more.length ? h("details", { class: "more-settings" }, h("summary", { text: `More settings (${more.length})` }), h("div", { class: "fields" }, more)) : null,
  );
  step("form");
  $("edit").showModal();
  const input = $("edit-fields").querySelector("input, select, textarea");
  if (input) input.focus();
  return new Promise((resolve) => { form.done = resolve; });
}

function special(key, config, profiles) {
  if (key === "labels") {
    const text = Object.entries(config.labels).map(([k, v]) => `${k}=${v}`).join(", ");
    return field(["labels"], { label: "Labels", hint: "key=value pairs, separated by commas", primary: true },
      h("input", { value: text, autocomplete: "off", placeholder: "line=line1, cell=press" }), config.labels, readLabels);
  }
  if (key === "profile" && config.profile != null) {
    const options = [...profiles.values()].filter((p) => p.type === config.type).map((p) => h("option", { value: p.id, text: p.id }));
    const select = h("select", {}, options);
    select.value = config.profile;
    return field(["profile"], { label: "Profile", hint: "its tags and groups", primary: true }, select, config.profile, (el) => el.value);
  }
  if (key === "groups" && config.groups != null) {
    const groups = withoutNulls(config.groups);
    const area = h("textarea", { rows: 10, spellcheck: "false", autocomplete: "off" });
    area.value = toJson(groups, 2);
    return field(["groups"], { label: "Groups and tags (JSON)", hint: "the device's own tags, as in the configuration file", primary: true, wide: true },
      area, groups, readJson);
  }
  return null;
}

// Shown at once: the fields registration asks for and those not at their default; the rest
// under "More settings".
function scalar(path, spec, value, asked = false) {
  const fallback = spec.fallback ?? null;
  const differs = value != null && toJson(value) !== toJson(fallback);
  const primary = asked || (differs && !spec.secret);
  const hint = spec.hint || null;
  if (spec.kind === "bool") {
    const box = h("input", { type: "checkbox" });
    box.checked = Boolean(value);
    return field(path, { label: spec.label, hint, primary, check: true }, box, value, (el) => el.checked);
  }
  if (spec.kind === "choice") {
    const none = spec.nullable ? [h("option", { value: "", text: fallback == null ? "(default)" : `(default: ${fallback})` })] : [];
    const select = h("select", {}, none, spec.choices.map((c, i) => h("option", { value: String(i), text: String(c) })));
    select.value = value == null ? "" : String(spec.choices.indexOf(value));
    return field(path, { label: spec.label, hint, primary }, select, value, (el) => (el.value === "" ? null : spec.choices[Number(el.value)]));
  }
  if (spec.kind === "json") {
    const shown = withoutNulls(value);
    const area = h("textarea", { rows: 4, spellcheck: "false" });
    area.value = shown == null ? "" : toJson(shown, 2);
    return field(path, { label: spec.label, hint, primary, wide: true }, area, shown, (el) => (el.value.trim() ? readJson(el) : null));
  }
  if (spec.secret) {
    const stored = value != null;
    const input = h("input", { type: "password", autocomplete: "new-password", placeholder: stored ? "stored, hidden: type to replace it" : "none" });
    return field(path, { label: spec.label, hint, primary: primary || stored, secret: true }, input, value, (el) => (el.value === "" ? UNCHANGED : el.value));
  }
  const numeric = spec.kind === "number";
  const input = h("input", {
    value: value == null ? "" : String(value), autocomplete: "off", inputmode: numeric ? "decimal" : null,
    placeholder: fallback != null ? `default: ${fallback}` : spec.nullable ? "none" : null,
  });
  return field(path, { label: spec.label, hint, primary }, input, value, (el) => {
    const text = el.value.trim();
    if (text === "") return null;  // back to the default (RFC 7396), or "required" from the API
    return numeric && NUMBER.test(text) ? Number(text) : text;
  });
}

// One labelled input with its error line; ``read`` gives the value to send, UNCHANGED, or an
// Unreadable.
function field(path, { label, hint, primary, wide, check, secret }, input, original, read) {
  const key = path.join(".");
  const id = `e-${key.replace(/\W/g, "-")}`;
  input.id = id;
  const error = h("span", { id: `${id}-error`, class: "field-error" });
  input.setAttribute("aria-describedby", `${id}-error`);
  const text = label || humanize(path[path.length - 1]);
  const el = check
    ? h("div", { class: "field check" }, h("label", {}, input, ` ${text}`), hint ? h("span", { class: "hint", text: hint }) : null, error)
    : h("div", { class: wide || input.tagName === "TEXTAREA" ? "field wide" : "field" },
      h("label", { for: id, text }), input, hint ? h("span", { class: "hint", text: hint }) : null, error);
  return { key, path, label: text, input, error, el, original, read, primary: Boolean(primary), secret: Boolean(secret) };
}

// In JSON shown for editing, null members are left out: null is the models' default, so what
// remains is what was set (and sending it back changes nothing).
function withoutNulls(value) {
  if (Array.isArray(value)) return value.map(withoutNulls);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null).map(([k, v]) => [k, withoutNulls(v)]));
}
function readJson(el) {
  try {
    return parseJson(el.value);
  } catch (error) {
    return new Unreadable(`not valid JSON: ${error.message}`);
  }
}
function readLabels(el) {
  const labels = {};
  for (const pair of el.value.split(/[,\n]/).map((s) => s.trim()).filter(Boolean)) {
    const at = pair.indexOf("=");
    if (at < 1) return new Unreadable(`"${pair}" is not key=value`);
    labels[pair.slice(0, at).trim()] = pair.slice(at + 1).trim();
  }
  return labels;
}

// The PATCH body and the lines of the review, or the problems of inputs that cannot be read.
function changes() {
  const patch = {}, lines = [], problems = [];
  for (const f of form.fields) {
    const value = f.read(f.input);
    if (value === UNCHANGED) continue;
    if (value instanceof Unreadable) { problems.push([f, value.problem]); continue; }
    if (f.key === "labels") {
      const old = f.original;
      const diff = {};
      for (const k of Object.keys(old)) if (!(k in value)) diff[k] = null;
      for (const [k, v] of Object.entries(value)) if (old[k] !== v) diff[k] = v;
      if (!Object.keys(diff).length) continue;
      patch.labels = diff;
      const show = (labels) => Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(", ") || "none";
      lines.push([f.label, show(old), show(value)]);
      continue;
    }
    if (!f.secret && toJson(value) === toJson(f.original ?? null)) continue;
    let target = patch;
    for (const part of f.path.slice(0, -1)) target = target[part] ??= {};
    target[f.path[f.path.length - 1]] = value;
    const show = (v) => (v == null ? "default" : typeof v === "object" ? `${Array.isArray(v) ? v.length : Object.keys(v).length} entries` : String(v));
    lines.push([f.path.length > 1 ? `${humanize(f.path[0])}: ${f.label}` : f.label, f.secret ? "hidden" : show(f.original), f.secret ? "replaced (hidden)" : show(value)]);
  }
  return { patch, lines, problems };
}

function step(which) {
  const review = which === "review";
  $("edit-fields").hidden = review;
  $("edit-review").hidden = !review;
  $("edit-back").hidden = !review;
  $("edit-submit").textContent = review ? "Save changes" : "Review changes";
}
function clearErrors() {
  $("edit-problem").textContent = "";
  for (const f of form.fields) { f.error.textContent = ""; f.input.removeAttribute("aria-invalid"); }
}
function fieldError(f, message) {
  f.error.textContent = f.error.textContent ? `${f.error.textContent}; ${message}` : message;
  f.input.setAttribute("aria-invalid", "true");
  const details = f.el.closest("details");
  if (details) details.open = true;
}

$("edit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if ($("edit-review").hidden) { review(); return; }
  const submit = $("edit-submit");
  submit.disabled = true;
  try {
    finish(await api(dev(form.data.id), { method: "PATCH", body: form.patch }));
  } catch (error) {
    step("form");
    showProblem(error);
  } finally {
    submit.disabled = false;
  }
});
function review() {
  clearErrors();
  const { patch, lines, problems } = changes();
  for (const [f, message] of problems) fieldError(f, message);
  if (problems.length) { problems[0][0].input.focus(); return; }
  if (!lines.length) { $("edit-problem").textContent = "Nothing changed yet."; return; }
  form.patch = patch;
  $("review-list").replaceChildren(...lines.map(([name, before, after]) => h("li", {},
    h("b", { text: name }), h("span", { class: "before", text: before }), " → ", h("span", { class: "after", text: after }))));
  step("review");
  $("edit-submit").focus();
}
// Each named field next to its input (the longest key the field's path starts with); the rest,
// and any other refusal, above the form.
function showProblem(error) {
  if (!(error instanceof ApiError) || error.status !== 422) { $("edit-problem").textContent = refusal(error, "editing a device"); return; }
  const general = [];
  for (const [path, message] of error.fields()) {
    const owner = form.fields
      .filter((f) => path === f.key || path.startsWith(`${f.key}.`) || path.startsWith(`${f.key}[`))
      .sort((a, b) => b.key.length - a.key.length)[0];
    if (owner) fieldError(owner, path === owner.key ? message : `${path.slice(owner.key.length).replace(/^\./, "")}: ${message}`);
    else general.push(`${path}: ${message}`);
  }
  $("edit-problem").textContent = general.join("; ");
  const invalid = form.fields.find((f) => f.input.getAttribute("aria-invalid"));
  if (invalid) invalid.input.focus();
}

// Resolves openEdit with the saved device, or null when the form is left without saving.
function finish(saved) {
  const done = form.done;
  form.done = null;
  if ($("edit").open) $("edit").close();
  if (done) done(saved);
}
$("edit-back").addEventListener("click", () => step("form"));
$("edit-cancel").addEventListener("click", () => finish(null));
$("edit").addEventListener("close", () => finish(null));
