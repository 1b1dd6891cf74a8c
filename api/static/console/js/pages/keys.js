// API keys (admin): list with prefix, scopes, last use and rate limit; create (the key shown
// once, with a copy button); revoke.

import { del, get, post } from "../api.js";
import { badge, dialog, errorBox, fill, h, secretBox, time, toast } from "../ui.js";

const SCOPES = ["read", "write", "admin"];

export function render(main, context) {
  const errors = h("div");
  const list = h("div", { class: "table-wrap" });

  async function load() {
    try {
      const { data } = await get("/api-keys");
      fill(list, h("table", { class: "keys" },
        h("thead", {}, h("tr", {}, ["Name", "Prefix", "Scopes", "Last used", "Rate limit", "Created", "State", ""]
          .map((t) => h("th", {}, t)))),
        h("tbody", {}, data.map((k) => h("tr", { dataset: { id: k.id }, class: k.revokedAt ? "revoked" : "" },
          h("td", { "data-label": "Name" }, k.name, k.id === context.me.id ? [" ", badge("this console", "info")] : null),
          h("td", { "data-label": "Prefix" }, h("code", {}, `${k.prefix}…`)),
          h("td", { "data-label": "Scopes" }, k.scopes.map((s) => badge(s, `scope-${s}`))),
          h("td", { "data-label": "Last used" }, time(k.lastUsedAt)),
          h("td", { "data-label": "Rate limit" }, k.rateLimit || h("span", { class: "muted" }, "default")),
          h("td", { "data-label": "Created" }, time(k.createdAt)),
          h("td", { "data-label": "State" }, k.revokedAt ? [badge("revoked", "bad"), " ", time(k.revokedAt)] : badge("live", "ok")),
          h("td", {}, k.revokedAt ? null : h("button", { type: "button", class: "danger small", onclick: () => revoke(k) }, "Revoke")))))));
    } catch (error) {
      fill(errors, errorBox(error));
    }
  }

  function revoke(k) {
    const self = k.id === context.me.id;
    const close = dialog(`Revoke ${k.name}?`, h("p", {}, `Requests with ${k.prefix}… fail at once.`,
      self ? h("strong", {}, " This is the key this console is signed in with: you will be signed out.") : null),
    [h("button", { type: "button", class: "danger", onclick: async () => {
      close();
      try {
        await del(`/api-keys/${k.id}`);
        toast(`Revoked ${k.name}.`, "ok");
        if (self) location.reload(); else load();
      } catch (error) {
        fill(errors, errorBox(error));
      }
    } }, "Revoke")]);
  }

  const formErrors = h("div");
  const form = h("form", { class: "card toolbar key-form", onsubmit: async (event) => {
    event.preventDefault();
    fill(formErrors);
    const body = {
      name: form.elements.name.value.trim(),
      scopes: [...form.querySelectorAll("input[name=scopes]:checked")].map((c) => c.value),
      rateLimit: form.elements.rateLimit.value.trim() || null,
    };
    try {
      const { data } = await post("/api-keys", body);
      dialog("Key created", secretBox(`API key ${data.name}`, data.key));
      form.reset();
      load();
    } catch (error) {
      fill(formErrors, errorBox(error));
    }
  } },
  h("strong", {}, "New key"),
  h("input", { name: "name", placeholder: "name", "aria-label": "Key name", required: true }),
  SCOPES.map((s) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "scopes", value: s, checked: s === "read" }), ` ${s}`)),
  h("input", { name: "rateLimit", placeholder: "rate limit, e.g. 100/minute", "aria-label": "Rate limit" }),
  h("button", { type: "submit", class: "primary" }, "Create key"));

  fill(main, h("div", { class: "page-head" }, h("h1", {}, "API keys")), form, formErrors, errors, list);
  load();
  return null;
}
