// The device view's events: its latest events and alarm transitions (OPC UA), newest first,
// refreshed while the view is open; an alarm still waiting for acknowledgement has a button
// for operators and admins (confirmed first, audited like a write).
import { $, h, clock, api, dev, refusal, confirmStep, toast } from "./lib.js";

const REFRESH = 5000;  // ms
const SHOWN = 20;
const PAGE = { "X-Gateway-Page": "1" };  // the audit records the path as "page"
const view = { device: null, write: false, timer: 0, loading: 0 };

export function showEvents(device, write) {
  clearInterval(view.timer);
  view.device = device; view.write = write;
  load().catch(showError);
  view.timer = setInterval(() => load().catch(showError), REFRESH);
}

export function hideEvents() {
  clearInterval(view.timer);
  view.device = null;
  view.loading++;
}

async function load() {
  const device = view.device;
  if (!device) return;
  const call = ++view.loading;
  const body = await api(`${dev(device.id)}/events?limit=${SHOWN}`);
  if (call !== view.loading) return;
  $("events-panel").hidden = body.items.length === 0;
  $("events-rows").replaceChildren(...body.items.map(row));
}

function row(event) {
  const condition = event.condition_id !== undefined;
  const state = !condition ? "event"
    : `${event.active ? "active" : "normal"} · ${event.acked ? "acknowledged" : "unacknowledged"}`;
  const waiting = condition && event.retain && !event.acked;
  const kids = [
    h("span", { class: "e-time", text: clock.format(new Date(event.time_ns / 1e6)) }),
    h("span", { class: "e-sev", text: String(event.severity), title: "severity, 1..1000" }),
    h("span", { class: "e-what", text: `${event.source}: ${event.message}`, title: event.type }),
    h("span", { class: "e-state", text: state }),
  ];
  if (waiting && view.write) {
    kids.push(h("button", {
      type: "button", class: "secondary", text: "Acknowledge",
      onclick: () => acknowledge(event),
    }));
  }
  return h("div", { class: "e-row", "data-severity": event.severity >= 700 ? "high" : "low", "data-event": event.event_id }, ...kids);
}

async function acknowledge(event) {
  const device = view.device;
  $("events-problem").textContent = "";
  try {
    const yes = await confirmStep({
      title: `Acknowledge ${event.condition || event.source}?`,
      text: `${event.message} (severity ${event.severity}). The server records the acknowledgement; the gateway audits it.`,
      action: "Acknowledge",
    });
    if (!yes) return;
    await api(`${dev(device.id)}/events/${encodeURIComponent(event.event_id)}/acknowledge`, {
      method: "POST", headers: PAGE, body: { comment: "acknowledged on the gateway's page" },
    });
    toast(`Acknowledged ${event.condition || event.source}`);
    await load();
  } catch (error) {
    $("events-problem").textContent = refusal(error, "acknowledging an alarm");
  }
}

function showError(error) {
  $("events-problem").textContent = refusal(error, "reading events");
}
