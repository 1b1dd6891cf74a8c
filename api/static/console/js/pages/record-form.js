// One form field per writable entity field (as the OpenAPI document describes it), and back.

import { get } from "../api.js";
import { h } from "../ui.js";

const CHOICES = 100;

/** Suggestions for a reference field: the first records of its target, by id and label. */
function choices(field) {
  const list = h("datalist", { id: `choices-${field.name}` });
  get(`/${field.refersTo}`, { limit: CHOICES, fields: `id,${field.refersToLabel}` })
    .then(({ data }) => list.append(...data.map((r) => h("option", { value: r.id }, r[field.refersToLabel] ?? r.id))))
    .catch(() => {});  // only suggestions: the field still takes any id
  return list;
}

/** A labelled input for `field` holding `value`. */
export function fieldInput(field, value, disabled) {
  const id = `field-${field.name}`;
  const attrs = { id, name: field.name, disabled, dataset: { field: field.name } };
  let input;
  if (field.enum) {
    input = h("select", attrs,
      field.nullable || value === undefined ? h("option", { value: "" }, "—") : null,
      field.enum.map((option) => h("option", { value: option, selected: option === value }, option)));
  } else if (field.type === "boolean") {
    input = h("input", { ...attrs, type: "checkbox", checked: !!value });
  } else if (field.maxLength > 500) {
    input = h("textarea", { ...attrs, rows: 4 }, value ?? "");
  } else {
    input = h("input", {
      ...attrs, value: value ?? "", list: field.refersTo && !disabled ? `choices-${field.name}` : null,
      type: field.type === "integer" || field.type === "number" ? "number" : "text",
      placeholder: field.format === "date-time" ? "2025-01-15T10:00:00Z" : field.refersTo ? `id of a ${field.refersTo.replace(/s$/, "")}` : null,
    });
  }
  return h("div", { class: "field" },
    h("label", { for: id }, field.name, field.required ? h("span", { class: "required", title: "required" }, " *") : null),
    input, field.refersTo && !disabled ? choices(field) : null,
    h("div", { class: "field-error", dataset: { errorFor: field.name } }));
}

/** The form's values as a JSON body; when `creating`, empty optional fields are left out. */
export function readForm(form, entity, creating = false) {
  const values = {};
  for (const field of entity.fields.filter((f) => !f.readOnly)) {
    const input = form.querySelector(`[data-field="${field.name}"]`);
    if (!input) continue;
    if (field.type === "boolean") {
      values[field.name] = input.checked;
      continue;
    }
    const text = input.value;
    if (text === "") {
      if (creating && !field.required) continue;
      values[field.name] = field.nullable ? null : "";
    } else if (field.type === "integer" || field.type === "number") {
      values[field.name] = Number(text);
    } else {
      values[field.name] = text;
    }
  }
  return values;
}

/** Write each field's messages (the error envelope's `details`) under its input. */
export function showFieldErrors(container, details) {
  for (const slot of container.querySelectorAll(".field-error")) slot.textContent = "";
  for (const [name, messages] of Object.entries(details || {})) {
    const slot = container.querySelector(`[data-error-for="${name}"]`);
    if (slot) slot.textContent = Array.isArray(messages) ? messages.join(" ") : String(messages);
  }
}
