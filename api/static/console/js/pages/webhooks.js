// Webhooks (admin): list, create (secret shown once), edit, pause, test, rotate the secret,
// and each hook's delivery log with every attempt, redeliver included.

import { del, get, patch, post } from "../api.js";
import { eventTypes } from "../schema.js";
import { badge, dialog, empty, errorBox, fill, h, secretBox, time, toast } from "../ui.js";

const REFRESH_MS = 2000;

function state(hook) {
  if (hook.active) return badge("active", "ok");
  if (hook.disabledReason) return badge(`disabled: ${hook.disabledReason}`, "bad");
  return badge("paused", "warn");
}

export function render(main, context, [id]) {
  return id ? renderHook(main, id) : renderList(main);
}

async function eventChecks(chosen = []) {
  const types = ["*", ...(await eventTypes())];
  return h("fieldset", { class: "checks" }, h("legend", {}, "Events"),
    types.map((type) => h("label", { class: "check" },
      h("input", { type: "checkbox", name: "events", value: type, checked: chosen.includes(type) }),
      ` ${type === "*" ? "* (every event)" : type}`)));
}

function readHookForm(form) {
  return {
    url: form.elements.url.value.trim(),
    events: [...form.querySelectorAll("input[name=events]:checked")].map((c) => c.value),
    description: form.elements.description.value.trim() || null,
  };
}

async function hookForm(hook, onSubmit, submitLabel) {
  const errors = h("div");
  const form = h("form", { class: "card hook-form", onsubmit: async (event) => {
    event.preventDefault();
    fill(errors);
    try { await onSubmit(readHookForm(form)); } catch (error) { fill(errors, errorBox(error)); }
  } },
  h("div", { class: "field" }, h("label", { for: "hook-url" }, "URL"),
    h("input", { id: "hook-url", name: "url", type: "url", value: hook.url || "", placeholder: "https://example.com/hook", required: true })),
  h("div", { class: "field" }, h("label", { for: "hook-description" }, "Description"),
    h("input", { id: "hook-description", name: "description", value: hook.description || "" })),
  await eventChecks(hook.events || ["*"]),
  errors,
  h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, submitLabel)));
  return form;
}

function renderList(main) {
  const errors = h("div");
  const list = h("div", { class: "table-wrap" });

  async function load() {
    try {
      const { data } = await get("/webhooks");
      fill(list, data.length ? h("table", {},
        h("thead", {}, h("tr", {}, ["URL", "Events", "State", "Created"].map((t) => h("th", {}, t)))),
        h("tbody", {}, data.map((hook) => h("tr", { dataset: { id: hook.id } },
          h("td", { "data-label": "URL" }, h("a", { href: `#/webhooks/${hook.id}` }, hook.url),
            hook.description ? h("div", { class: "muted" }, hook.description) : null),
          h("td", { "data-label": "Events" }, hook.events.join(", ")),
          h("td", { "data-label": "State" }, state(hook)),
          h("td", { "data-label": "Created" }, time(hook.createdAt)))))) : empty("No webhooks yet."));
    } catch (error) {
      fill(errors, errorBox(error));
    }
  }

  async function create() {
    const form = await hookForm({}, async (values) => {
      const { data } = await post("/webhooks", values);
      close();
      dialog("Webhook created", h("div", {}, h("p", {}, "Deliveries are signed with this secret."),
        secretBox("Signing secret", data.secret)));
      load();
    }, "Create webhook");
    const close = dialog("New webhook", form);
  }

  fill(main, h("div", { class: "page-head" }, h("h1", {}, "Webhooks"),
    h("div", { class: "actions" }, h("button", { type: "button", class: "primary", onclick: create }, "New webhook"))),
  errors, list);
  load();
  return null;
}

function deliveryRow(hookId, delivery, reload, errors) {
  return h("tr", { dataset: { id: delivery.id, status: delivery.status } },
    h("td", { "data-label": "Created" }, time(delivery.createdAt)),
    h("td", { "data-label": "Event" }, h("code", { title: delivery.eventId }, delivery.eventId)),
    h("td", { "data-label": "Attempt" }, delivery.attempt),
    h("td", { "data-label": "Status" }, badge(delivery.status,
      { succeeded: "ok", failed: "bad", pending: "warn" }[delivery.status])),
    h("td", { "data-label": "Response", class: "response-status" }, delivery.responseStatus ?? "—"),
    h("td", { "data-label": "Duration" }, delivery.durationMs === null ? "—" : `${delivery.durationMs} ms`),
    h("td", { "data-label": "Error", class: "delivery-error" }, delivery.error || "—"),
    h("td", { "data-label": "Next attempt" }, time(delivery.nextAttemptAt)),
    h("td", {}, h("button", { type: "button", class: "small", onclick: async () => {
      try {
        await post(`/webhooks/${hookId}/deliveries/${delivery.id}/redeliver`);
        toast("Redelivery queued.", "ok");
        reload();
      } catch (error) {
        fill(errors, errorBox(error));
      }
    } }, "Redeliver")));
}

function renderHook(main, id) {
  const errors = h("div");
  const head = h("div", { class: "page-head" });
  const editor = h("div");
  const log = h("div", { class: "table-wrap" });
  let hook = null;

  async function action(run) {
    fill(errors);
    try { await run(); } catch (error) { fill(errors, errorBox(error)); }
  }

  async function loadHook() {
    await action(async () => {
      hook = (await get(`/webhooks/${id}`)).data;
      fill(head, h("h1", {}, h("a", { href: "#/webhooks" }, "Webhooks"), " / ", h("code", {}, id)), state(hook),
        h("div", { class: "actions" },
          h("button", { type: "button", onclick: () => setActive(!hook.active) }, hook.active ? "Pause" : "Resume"),
          h("button", { type: "button", onclick: sendTest }, "Send test"),
          h("button", { type: "button", onclick: rotate }, "Rotate secret"),
          h("button", { type: "button", class: "danger", onclick: remove }, "Delete")));
      fill(editor, await hookForm(hook, async (values) => {
        hook = (await patch(`/webhooks/${id}`, values)).data;
        toast("Webhook saved.", "ok");
        loadHook();
      }, "Save"));
    });
  }

  async function loadLog() {
    try {
      const { data } = await get(`/webhooks/${id}/deliveries`, { limit: 50 });
      fill(log, data.length ? h("table", { class: "deliveries" },
        h("thead", {}, h("tr", {}, ["Created", "Event", "Attempt", "Status", "Response", "Duration", "Error", "Next attempt", ""]
          .map((t) => h("th", {}, t)))),
        h("tbody", {}, data.map((d) => deliveryRow(id, d, loadLog, errors)))) : empty("No deliveries yet."));
    } catch (error) {
      fill(errors, errorBox(error));
    }
  }

  const setActive = (active) => action(async () => {
    await patch(`/webhooks/${id}`, { active });
    toast(active ? "Webhook resumed." : "Webhook paused.", "ok");
    loadHook();
  });
  const sendTest = () => action(async () => {
    await post(`/webhooks/${id}/test`);
    toast("Test event sent.", "ok");
    loadLog();
  });
  const rotate = () => action(async () => {
    const { data } = await post(`/webhooks/${id}/rotate-secret`);
    dialog("Secret rotated", h("div", {}, h("p", {}, "The old secret keeps signing beside this one for 24 hours."),
      secretBox("New signing secret", data.secret)));
  });
  function remove() {
    const close = dialog(`Delete webhook ${id}?`, h("p", {}, "Its delivery log goes with it."), [h("button", {
      type: "button", class: "danger", onclick: () => action(async () => {
        close();
        await del(`/webhooks/${id}`);
        location.hash = "#/webhooks";
      }),
    }, "Delete")]);
  }

  fill(main, head, errors, h("div", { class: "hook-grid" },
    h("section", {}, h("h2", {}, "Delivery log ", h("button", { type: "button", class: "small", onclick: loadLog }, "Refresh")), log),
    h("section", {}, h("h2", {}, "Settings"), editor)));
  loadHook();
  loadLog();
  const timer = setInterval(loadLog, REFRESH_MS);
  return () => clearInterval(timer);
}
