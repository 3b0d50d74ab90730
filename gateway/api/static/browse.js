// The picker: a server's variables (POST /api/v1/protocols/{type}/discover) listed under their
// parent, filterable, with checkboxes; it resolves with the picked ones (each with the tag that
// reads it), or null when left.
import { $, h, ApiError, api, refusal } from "./lib.js";

const picker = { type: null, connection: null, variables: [], picked: new Set(), fieldError: null, done: null, call: 0 };
const readable = (v) => v.access.includes("r");

export function pickTags({ type, connection, picked, fieldError }) {
  Object.assign(picker, { type, connection, fieldError, variables: [], picked: new Set(picked.map((v) => v.address)) });
  $("browse-where").textContent = Object.values(connection).join(" · ") || type;
  $("b-filter").value = "";
  $("browse").showModal();
  browse().catch(show);
  return new Promise((resolve) => { picker.done = resolve; });
}

async function browse() {
  const call = ++picker.call;  // a slower answer to an earlier Browse is dropped
  problem("");
  $("err-b-start").textContent = "";
  $("b-start").removeAttribute("aria-invalid");
  const depth = Number($("b-depth").value);
  $("b-list").replaceChildren(h("p", { class: "b-note", text: `Browsing ${$("browse-where").textContent}, ${depth} level${depth > 1 ? "s" : ""} deep…` }));
  $("b-run").disabled = true;
  try {
    const body = { connection: picker.connection, depth, start: $("b-start").value.trim() || undefined };
    const answer = await api(`/api/v1/protocols/${encodeURIComponent(picker.type)}/discover`, { method: "POST", body });
    if (call !== picker.call) return;
    picker.variables = answer.variables;
    if (answer.truncated) problem(`Only the first ${answer.variables.length} variables are listed: start lower, or browse fewer levels.`);
  } catch (error) {
    if (call !== picker.call) return;
    picker.variables = [];
    refused(error);
  } finally {
    if (call === picker.call) $("b-run").disabled = false;
  }
  const listed = new Set(picker.variables.map((v) => v.address));  // only what is listed is picked
  picker.picked = new Set([...picker.picked].filter((address) => listed.has(address)));
  render();
}

// A bad connection field belongs to the registration form: the picker closes and the form
// names it. A bad start node is named here; anything else (a 502 naming the server and the
// reason) is said above the list.
function refused(error) {
  if (!(error instanceof ApiError) || error.status !== 422) { problem(refusal(error, "browsing a server")); return; }
  const other = [];
  let formFields = 0;
  for (const [field, message] of error.fields()) {
    if (field === "start") { $("err-b-start").textContent = message; $("b-start").setAttribute("aria-invalid", "true"); }
    else if (field.startsWith("connection.")) { picker.fieldError(field.slice("connection.".length).split(/[.[]/)[0], message); formFields++; }
    else other.push(`${field}: ${message}`);
  }
  if (formFields && !other.length) { finish(null); return; }
  problem(other.join("; "));
}

function render() {
  const terms = $("b-filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  const shown = picker.variables.filter((v) => {
    const haystack = `${v.path.join("/")} ${v.address} ${v.data_type}`.toLowerCase();
    return terms.every((t) => haystack.includes(t));
  });
  const parents = new Map();
  for (const v of shown) {
    const parent = v.path.slice(0, -1).join("/") || "(start node)";
    if (!parents.has(parent)) parents.set(parent, []);
    parents.get(parent).push(v);
  }
  const sections = [...parents].map(([parent, variables]) => h("section", { class: "b-group" },
    h("label", { class: "b-parent" }, h("input", { type: "checkbox", "data-parent": parent }), h("span", { text: parent }), h("small", { text: String(variables.length) })),
    variables.map((v) => h("label", { class: readable(v) ? "b-row" : "b-row unreadable", title: readable(v) ? v.address : `${v.address}: the server does not let it be read` },
      h("input", { type: "checkbox", "data-address": v.address, disabled: !readable(v) }),
      h("span", { class: "b-name", text: v.path[v.path.length - 1] }),
      h("span", { class: "b-type", text: `${v.data_type}${v.array ? "[]" : ""}` }),
      h("span", { class: "b-access", text: v.access }),
      h("code", { class: "b-node", text: v.address })))));
  const empty = picker.variables.length ? "No variable matches this filter." : "No variables listed.";
  $("b-list").replaceChildren(...(sections.length ? sections : [h("p", { class: "b-note", text: empty })]));
  picker.shown = shown;
  sync();
}

// Checkboxes, group boxes, "All shown", the count and the button follow the picked set.
function sync() {
  for (const box of $("b-list").querySelectorAll("input[data-address]")) box.checked = picker.picked.has(box.dataset.address);
  for (const box of $("b-list").querySelectorAll("input[data-parent]")) {
    const rows = [...box.closest("section").querySelectorAll("input[data-address]:not(:disabled)")];
    const on = rows.filter((r) => r.checked).length;
    box.checked = rows.length > 0 && on === rows.length;
    box.indeterminate = on > 0 && on < rows.length;
    box.disabled = !rows.length;
  }
  const pickable = (picker.shown || []).filter(readable);
  const on = pickable.filter((v) => picker.picked.has(v.address)).length;
  $("b-all").checked = pickable.length > 0 && on === pickable.length;
  $("b-all").indeterminate = on > 0 && on < pickable.length;
  $("b-all").disabled = !pickable.length;
  const total = picker.variables.filter(readable).length;
  const n = picker.picked.size;
  $("b-count").textContent = total ? `${n} of ${total} readable variables picked` : "";
  $("b-use").textContent = n ? `Use ${n} tag${n > 1 ? "s" : ""}` : "Use these tags";
  $("b-use").disabled = !n;
}
function pick(addresses, on) {
  for (const address of addresses) if (on) picker.picked.add(address); else picker.picked.delete(address);
  sync();
}
$("b-list").addEventListener("change", (event) => {
  const box = event.target;
  if (box.dataset.address) pick([box.dataset.address], box.checked);
  else if (box.dataset.parent) pick([...box.closest("section").querySelectorAll("input[data-address]:not(:disabled)")].map((r) => r.dataset.address), box.checked);
});
$("b-all").addEventListener("change", () => pick((picker.shown || []).filter(readable).map((v) => v.address), $("b-all").checked));
$("b-filter").addEventListener("input", render);
$("b-filter").addEventListener("keydown", (event) => { if (event.key === "Enter") event.preventDefault(); });  // filters, not browses again
$("browse-form").addEventListener("submit", (event) => { event.preventDefault(); browse().catch(show); });

function problem(text) { $("browse-problem").textContent = text; }
function show(error) { problem(refusal(error, "browsing a server")); }

function finish(result) {
  const done = picker.done;
  picker.done = null;
  picker.call++;
  if ($("browse").open) $("browse").close();
  if (done) done(result);
}
$("b-use").addEventListener("click", () => finish(shortNames(picker.variables.filter((v) => picker.picked.has(v.address)))));

// Tag names are browse paths from the start node (Plant.Line1.Filler.Speed); the parents all
// picked variables share are dropped (Speed), which keeps the names unique and readable.
function shortNames(variables) {
  if (!variables.length) return variables;
  const parents = variables.map((v) => v.path.slice(0, -1));
  let shared = 0;
  while (parents.every((p) => p.length > shared && p[shared] === parents[0][shared])) shared++;
  const cut = `${parents[0].slice(0, shared).join(".")}.`;
  if (!shared || !variables.every((v) => v.tag.name.startsWith(cut))) return variables;
  return variables.map((v) => ({ ...v, tag: { ...v.tag, name: v.tag.name.slice(cut.length) } }));
}
$("browse-cancel").addEventListener("click", () => finish(null));
$("browse-close").addEventListener("click", () => finish(null));
$("browse").addEventListener("close", () => finish(null));
