// Small DOM helpers shared by the pages: element building, errors, toasts, dialogs, formats.

/** `h("button", {class: "primary", onclick}, "Save")`: attributes, `on*` listeners, children. */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, value);
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

/** Replace an element's children. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** An error in the contract's words: the message, then each field's messages (or other details). */
export function errorBox(error) {
  const items = [];
  const details = error.details || {};
  for (const [field, value] of Object.entries(details)) {
    const text = Array.isArray(value) ? value.join(" ") : typeof value === "object" ? JSON.stringify(value) : value;
    items.push(h("li", {}, h("strong", {}, field), ": ", text));
  }
  return h("div", { class: "error", role: "alert" },
    h("p", {}, error.message, " ", error.code ? h("span", { class: "code" }, error.code) : null),
    items.length ? h("ul", {}, items) : null);
}

export function toast(message, kind = "info") {
  const box = h("div", { class: `toast ${kind}`, role: "status" }, message);
  document.getElementById("toasts").append(box);
  setTimeout(() => box.remove(), 5000);
}

/** Open the page's <dialog> with `title` and `body`; `actions` are buttons. Returns a close function. */
export function dialog(title, body, actions = []) {
  const box = document.getElementById("dialog");
  const close = () => box.open && box.close();
  fill(box, h("h2", {}, title), body,
    h("div", { class: "actions" }, actions, h("button", { type: "button", onclick: close }, "Close")));
  box.showModal();
  return close;
}

/** A secret the API shows once, with a copy button. */
export function secretBox(label, value) {
  const field = h("input", { class: "secret", readonly: true, value, "aria-label": label });
  const copy = h("button", {
    type: "button", class: "primary",
    onclick: async () => {
      field.select();
      try { await navigator.clipboard.writeText(value); } catch { document.execCommand("copy"); }
      copy.textContent = "Copied";
    },
  }, "Copy");
  return h("div", { class: "secret-box" },
    h("p", {}, h("strong", {}, label), " — shown only now; store it somewhere safe."),
    h("div", { class: "row" }, field, copy));
}

export function time(value) {
  if (!value) return "—";
  const date = new Date(value);
  return h("time", { datetime: value, title: value }, date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }));
}

export function badge(text, kind = "") {
  return h("span", { class: `badge ${kind}` }, text);
}

/** A button that needs `allowed`; when not allowed it is disabled and says which scope it needs. */
export function guarded(allowed, scope, label, attrs = {}) {
  return h("button", {
    type: "button", ...attrs, disabled: !allowed,
    title: allowed ? attrs.title : `Needs the ${scope} scope`,
  }, label);
}

export function progress(done, total) {
  const share = total ? Math.min(100, Math.round((100 * done) / total)) : 0;
  const bar = h("div", { class: "bar" });
  bar.style.width = `${share}%`;  // CSSOM, which the page's CSP allows (a style attribute it does not)
  return h("div", { class: "progress" },
    h("div", { class: "track", role: "progressbar", "aria-valuenow": share, "aria-valuemin": 0, "aria-valuemax": 100 }, bar),
    h("span", { class: "label" }, total ? `${done} / ${total} (${share}%)` : `${done}`));
}

export function empty(text) {
  return h("p", { class: "empty" }, text);
}
