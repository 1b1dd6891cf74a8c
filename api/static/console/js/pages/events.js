// Events: the latest events, then a live tail over SSE (EventSource with ?access_token=),
// filtered by type; resumes after a drop from the last event id, and resyncs on {"type":"reset"}.

import { get, stream } from "../api.js";
import { eventTypes } from "../schema.js";
import { badge, errorBox, fill, h, time } from "../ui.js";

const KEPT = 200;
const RETRY_MS = 3000;

function kindOf(type) {
  if (type.endsWith(".created")) return "ok";
  if (type.endsWith(".deleted") || type.endsWith(".failed")) return "bad";
  if (type.endsWith(".updated")) return "info";
  return "";
}

function row(event) {
  const record = event.data || {};
  const label = record.title || record.name || record.email || record.body || record.type || "";
  return h("li", { class: "event", dataset: { id: event.id, type: event.type } },
    h("div", { class: "event-head" }, badge(event.type, kindOf(event.type)), " ",
      h("code", {}, record.id || ""), " ", h("span", {}, label), h("span", { class: "spacer" }),
      time(event.createdAt)),
    event.previousAttributes ? h("div", { class: "muted" }, "changed: ", Object.keys(event.previousAttributes).join(", ")) : null,
    h("details", {}, h("summary", {}, event.id), h("pre", {}, JSON.stringify(event, null, 2))));
}

export function render(main) {
  const errors = h("div");
  const list = h("ol", { class: "events" });
  const status = h("span", { class: "live-state", role: "status" }, "Connecting…");
  const notice = h("div");
  const seen = new Set();
  let source = null;
  let lastEventId = null;
  let retry = null;
  let paused = false;
  let chosen = [];

  function add(event, live) {
    if (seen.has(event.id)) return;
    seen.add(event.id);
    const item = row(event);
    if (live) item.classList.add("fresh");
    list.prepend(item);
    while (list.children.length > KEPT) list.lastChild.remove();
  }

  async function loadLatest() {
    const { data } = await get("/events", { limit: 20, type: chosen.join(",") });
    list.replaceChildren();
    seen.clear();
    data.slice().reverse().forEach((e) => add(e, false));
    return data[0]?.id || null;
  }

  function setStatus(text, kind) {
    status.textContent = text;
    status.className = `live-state ${kind}`;
  }

  function open() {
    clearTimeout(retry);
    if (source) source.close();
    source = stream({ types: chosen.join(","), lastEventId });
    source.onopen = () => setStatus("Live", "ok");
    source.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.type === "connected") return setStatus("Live", "ok");
      if (event.type === "reset") return resync();
      if (message.lastEventId) lastEventId = message.lastEventId;
      add(event, true);
    };
    source.onerror = () => {
      setStatus("Connection lost; reconnecting…", "warn");
      if (lastEventId && source.readyState !== EventSource.CLOSED) return;  // it resends Last-Event-ID
      // The browser gave up, or there is no event id to resume from: start again by hand,
      // from the last id seen, else from a fresh look at the latest events.
      source.close();
      retry = setTimeout(lastEventId ? open : start, RETRY_MS);
    };
  }

  async function resync() {
    fill(notice, h("p", { class: "notice" }, "The server could not replay every missed event; the latest events were reloaded."));
    try { lastEventId = await loadLatest(); } catch (error) { fill(errors, errorBox(error)); }
  }

  async function start() {
    clearTimeout(retry);
    try {
      lastEventId = await loadLatest();
      fill(errors);
      if (!paused) open();
    } catch (error) {
      fill(errors, errorBox(error));
      const passing = error.status === 0 || error.status >= 500;  // the network or the server: try again
      setStatus(passing ? "Not connected; retrying…" : "Not connected", "bad");
      if (passing) retry = setTimeout(start, RETRY_MS);
    }
  }

  const pause = h("button", { type: "button", onclick: () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    if (paused) {
      source?.close();
      clearTimeout(retry);
      setStatus("Paused", "");
    } else open();
  } }, "Pause");

  const filter = h("details", { class: "type-filter" }, h("summary", {}, "Types: all"));
  eventTypes().then((types) => {
    const boxes = types.map((type) => h("label", { class: "check" }, h("input", { type: "checkbox", value: type }), ` ${type}`));
    filter.append(h("div", { class: "checks" }, boxes, h("button", { type: "button", class: "primary small", onclick: () => {
      chosen = boxes.map((l) => l.firstChild).filter((c) => c.checked).map((c) => c.value);
      filter.firstChild.textContent = `Types: ${chosen.length ? chosen.join(", ") : "all"}`;
      filter.open = false;
      start();
    } }, "Apply")));
  });

  fill(main, h("div", { class: "page-head" }, h("h1", {}, "Events"), status, h("div", { class: "actions" }, pause)),
    filter, notice, errors, list);
  start();
  return () => { clearTimeout(retry); source?.close(); };
}
