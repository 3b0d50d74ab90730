// Setting values on a device from its view (operator and admin tokens): a row per writable tag
// with an input that fits it (a number within its bounds, on/off, one of its allowed values,
// text), a confirmation naming the device, the tag, its current and its new value, then the
// gateway's answer next to the input: the value read back, or why nothing was written. Nothing
// is sent without the confirmation (Enter opens it, with the focus on Cancel), nothing retried.
import {
  $, h, ints, clock, describeValue, isNumeric, AuthError, ApiError, api, dev, confirmStep,
} from "./lib.js";

const WHOLE = /^[+-]?\d+$/;
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const INTEGER_TYPES = /^u?int(8|16|32|64)$/;
const PAGE = { "X-Gateway-Page": "1" };  // the audit records the path as "page"

const panel = { device: null, key: "", rows: [] };
let ids = 0;

class Invalid extends Error {}

// The rows of `device`'s writable tags (none when the token may not write). Called on every
// change of the open device: the rows are rebuilt only when its writable tags change, so a
// value being typed and the last answer stay.
export function showWrites(device, allowed, fresh = false) {
  const tags = allowed ? [...device.tags.values()].filter((t) => t.config && t.config.writable) : [];
  const key = JSON.stringify(tags.map((t) => [t.name, kindOf(t), t.config]));
  if (fresh || device !== panel.device || key !== panel.key) {
    panel.device = device; panel.key = key;
    panel.rows = tags.map((tag) => new Row(device, tag));
    $("write-rows").replaceChildren(...panel.rows.map((row) => row.el));
  }
  $("write-panel").hidden = !tags.length;
  for (const row of panel.rows) row.showNow();
}

// How a value is entered: its allowed values, on/off, text or a number by the data type; by
// the value itself for a protocol whose tags do not say (OPC UA: the node's own type).
function kindOf(tag) {
  const c = tag.config, type = c.data_type, value = tag.value;
  if (c.allowed) return "choice";
  if (type === "bool" || (!type && typeof value === "boolean")) return "bool";
  if (type === "string" || (!type && typeof value === "string")) return "text";
  if (type || isNumeric(value) || c.min != null || c.max != null) return "number";
  return "any";
}

// A value as the operator reads it: integers exactly and grouped, other numbers as they are
// (a read-back float32 shows every digit it has), strings quoted.
function shown(value, unit) {
  let text;
  if (typeof value === "boolean") return value ? "on" : "off";
  if (typeof value === "bigint" || Number.isInteger(value)) text = ints.format(value);
  else if (typeof value === "number") text = String(value);
  else return `"${value}"`;
  return unit ? `${text} ${unit}` : text;
}

class Row {
  constructor(device, tag) {
    this.device = device; this.tag = tag; this.config = tag.config; this.kind = kindOf(tag);
    const c = this.config;
    // A whole number of the type, or of the scale's steps (42.5 with scale 0.1 is 425 on the wire).
    const whole = INTEGER_TYPES.test(c.data_type || "");
    this.integer = whole && (c.scale ?? 1) === 1 && (c.offset ?? 0) === 0;
    this.step = whole ? String(Math.abs(c.scale ?? 1)) : "any";
    const id = `w-${++ids}`;
    this.now = h("span", { class: "w-now" });
    this.note = h("p", { id: `${id}-note`, class: "w-note", role: "status" });
    this.button = h("button", { class: "secondary", type: "submit", text: "Set…", "aria-label": `Set ${tag.name}…` });
    const name = this.kind === "bool"
      ? h("span", { id: `${id}-name`, class: "w-name", text: tag.name, title: tag.name })
      : h("label", { for: id, class: "w-name", text: tag.name, title: tag.name });
    this.input = this.build(id);
    const unit = this.kind === "bool" ? null : h("span", { class: "w-unit", text: tag.unit || "", title: tag.unit || null });
    const field = h("div", { class: "w-field" }, this.input, unit);
    this.el = h("form", { class: "w-row", "data-tag": tag.name, "data-kind": this.kind, novalidate: true, onsubmit: (event) => this.submit(event) },
      name, this.now, field, this.button, this.note);
    this.el.addEventListener("input", () => { this.invalid(false); if (this.note.dataset.result === "invalid") this.say("hint", this.hint()); });
    this.say("hint", this.hint());
  }

  build(id) {
    const c = this.config, described = `${id}-note`;
    if (this.kind === "bool") {
      const option = (value, text) => h("label", {}, h("input", { type: "radio", name: id, value: String(value) }), h("span", { text }));
      return h("div", { class: "w-toggle", role: "radiogroup", "aria-labelledby": `${id}-name`, "aria-describedby": described },
        option(false, "off"), option(true, "on"));
    }
    if (this.kind === "choice") {
      return h("select", { id, "aria-describedby": described },
        h("option", { value: "", text: "Choose…" }),
        c.allowed.map((value, index) => h("option", { value: String(index), text: shown(value) })));
    }
    const common = { id, autocomplete: "off", "aria-describedby": described };
    if (this.kind === "number") {
      return h("input", { ...common, type: "number", step: this.step, min: c.min ?? null, max: c.max ?? null, placeholder: this.range() || "number" });
    }
    const length = c.data_type === "string" && c.length && c.encoding !== "utf-8" ? 2 * c.length : null;
    return h("input", { ...common, type: "text", spellcheck: "false", maxlength: length, placeholder: this.kind === "any" ? "number, true, false or text" : "text" });
  }

  range() {
    const { min, max } = this.config;
    if (min != null && max != null) return `${shown(min)} to ${shown(max)}`;
    if (min != null) return `${shown(min)} or more`;
    if (max != null) return `up to ${shown(max)}`;
    return "";
  }

  hint() {
    const c = this.config, parts = [c.data_type || "the device's own type"];
    if (this.kind === "choice") parts.push(`one of ${c.allowed.map((v) => shown(v)).join(", ")}`);
    else if (this.kind === "number") {
      parts.push(this.range() || (this.integer ? "whole numbers" : "any number"));
      if (!this.integer && this.step !== "any") parts.push(`steps of ${this.step}`);
    }
    else if (this.input.maxLength > 0) parts.push(`up to ${this.input.maxLength} characters`);
    return parts.join(" · ");
  }

  showNow() {
    const { text, title } = describeValue(this.tag);
    const unit = this.tag.unit && isNumeric(this.tag.value) ? ` ${this.tag.unit}` : "";
    const line = this.tag.value === "" ? "(empty)" : `${text}${unit}`;
    if (this.now.dataset.line !== line) {
      this.now.dataset.line = line;
      this.now.replaceChildren(h("small", { text: "now " }), line);
      this.now.title = title || line;
    }
  }

  current() {
    const tag = this.tag;
    if (tag.quality === "bad" || tag.value == null) return describeValue(tag).text;
    return shown(tag.value, tag.unit);
  }

  // The value to send, exact (a whole number beyond 2^53 as a BigInt), or Invalid with why.
  value() {
    const c = this.config, input = this.input;
    if (this.kind === "bool") {
      const picked = input.querySelector("input:checked");
      if (!picked) throw new Invalid("Pick on or off first.");
      return picked.value === "true";
    }
    if (this.kind === "choice") {
      if (!input.value) throw new Invalid("Pick a value first.");
      return c.allowed[Number(input.value)];
    }
    if (this.kind === "text") return input.value;
    const text = input.value.trim();
    if (this.kind === "any" && !WHOLE.test(text) && !DECIMAL.test(text)) {
      if (text === "true" || text === "false") return text === "true";
      if (!text) throw new Invalid("Enter a value first.");
      return input.value;
    }
    if (!text) throw new Invalid(input.validity && input.validity.badInput ? "Enter a number." : "Enter a value first.");
    let value;
    if (WHOLE.test(text)) {
      const exact = BigInt(text);
      value = Number.isSafeInteger(Number(exact)) ? Number(exact) : exact;
    } else {
      value = Number(text);
      if (!DECIMAL.test(text) || !Number.isFinite(value)) throw new Invalid(`${text} is not a number.`);
      if (this.integer && !Number.isSafeInteger(value)) throw new Invalid(`${this.tag.name} takes whole numbers (${c.data_type}).`);
    }
    // The gateway checks the same bounds; said here before anything is confirmed or sent.
    if (c.min != null && value < c.min) throw new Invalid(`${text} is below the minimum ${shown(c.min, this.tag.unit)}.`);
    if (c.max != null && value > c.max) throw new Invalid(`${text} is above the maximum ${shown(c.max, this.tag.unit)}.`);
    return value;
  }

  submit(event) {
    event.preventDefault();
    this.set().catch((error) => this.say("failed", `The page failed: ${error.message}`));
  }

  async set() {
    if (this.button.disabled) return;
    let value;
    try {
      value = this.value();
    } catch (error) {
      if (!(error instanceof Invalid)) throw error;
      this.say("invalid", error.message);
      this.invalid(true);
      this.focus();
      return;
    }
    const { device, tag } = this;
    const yes = await confirmStep({
      title: `Set ${tag.name} on ${device.id}?`,
      text: "The value goes to the device at once and is read back. A write that gets no answer is not retried.",
      action: "Set",
      details: [["Device", device.id], ["Tag", tag.name], ["Now", this.current()], ["New", shown(value, tag.unit), "new"]],
    });
    if (!yes) { this.focus(); return; }
    this.button.disabled = true;
    this.say("busy", `Setting ${shown(value, tag.unit)}…`);
    try {
      const answer = await api(`${dev(device.id)}/write`, { method: "POST", body: { values: { [tag.name]: value } }, headers: PAGE });
      const result = answer.results.find((r) => r.tag === tag.name) || {};
      const at = clock.format(new Date());
      this.say("written", result.read_back == null
        ? `Written at ${at} (not read back).`
        : `Written at ${at}; read back ${shown(result.read_back, tag.unit)}.`);
    } catch (error) {
      if (error instanceof AuthError) { this.say("hint", this.hint()); return; }
      if (!(error instanceof ApiError)) {
        this.say("unknown", `No answer from the gateway (${error.message}): the value may have been written; look at it before setting it again.`);
        return;
      }
      const result = (error.problem.results || []).find((r) => r.tag === tag.name);
      if (error.status === 502 && result && result.result === "unknown") this.say("unknown", `No answer: ${error.message}`);
      else if (error.status === 502) this.say("failed", `Failed: ${error.message}`);
      else { this.say("refused", `Not written: ${error.message}`); this.invalid(true); }
    } finally {
      this.button.disabled = false;
    }
  }

  say(result, text) {
    this.note.dataset.result = result;
    this.note.textContent = text;
  }

  invalid(on) {
    if (on) this.input.setAttribute("aria-invalid", "true"); else this.input.removeAttribute("aria-invalid");
  }

  focus() {
    (this.kind === "bool" ? this.input.querySelector("input") : this.input).focus();
  }
}
