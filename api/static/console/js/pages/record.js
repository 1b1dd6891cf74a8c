// One record of an entity: its form (save with If-Match; a 412 shows both versions side by
// side), facts and expanded relations, delete; and the create form.

import { del, get, patch, post } from "../api.js";
import { dialog, errorBox, fill, guarded, h, time, toast } from "../ui.js";
import { fieldInput, readForm, showFieldErrors } from "./record-form.js";

/** An expanded relation as a link to the record, named by its label field. */
export function expanded(context, entity, name, value) {
  if (!value) return h("span", { class: "muted" }, "—");
  const target = context.entities.find((e) => e.path === entity.fields.find((f) => f.name === `${name}Id`)?.refersTo);
  return h("a", { href: target ? `#/records/${target.path}/${value.id}` : null }, value[target?.label] ?? value.id);
}

// --- one record ------------------------------------------------------------------------------

export function renderRecord(main, context, entity, id) {
  const canWrite = context.can("write");
  const errors = h("div");
  const body = h("div");
  let record = null;
  let etag = null;

  async function load() {
    try {
      const answer = await get(`/${entity.path}/${id}`, { expand: entity.expand.join(",") });
      record = answer.data;
      etag = answer.etag;
      draw();
    } catch (error) {
      fill(errors, errorBox(error));
    }
  }

  function draw(values = record) {
    const form = h("form", { class: "card record-form", onsubmit: save },
      entity.fields.filter((f) => !f.readOnly).map((f) => fieldInput(f, values[f.name], !canWrite)),
      h("div", { class: "actions" },
        guarded(canWrite, "write", "Save", { type: "submit", class: "primary" }),
        guarded(canWrite, "write", "Delete", { class: "danger", onclick: remove })));
    const facts = h("dl", { class: "card facts" },
      h("dt", {}, "ETag"), h("dd", {}, h("code", { class: "etag" }, etag)),
      entity.fields.filter((f) => f.readOnly).map((f) => [h("dt", {}, f.name),
        h("dd", {}, f.format === "date-time" ? time(record[f.name]) : record[f.name] ?? "—")]),
      entity.relations.map((r) => [h("dt", {}, r.name), h("dd", {}, expanded(context, entity, r.name, record[r.name]))]));
    fill(body, h("div", { class: "record-grid" }, form, facts));
  }

  async function save(event) {
    event.preventDefault();
    fill(errors);
    const mine = readForm(event.target, entity);
    const changes = Object.fromEntries(Object.entries(mine).filter(([name, value]) => value !== record[name]));
    if (!Object.keys(changes).length) {
      toast("Nothing to save: no field changed.");
      return;
    }
    await send(changes, etag);
  }

  async function send(changes, ifMatch) {
    try {
      const answer = await patch(`/${entity.path}/${id}`, changes, { headers: { "If-Match": ifMatch } });
      record = { ...record, ...answer.data };
      etag = answer.etag;
      draw();
      toast("Saved.", "ok");
    } catch (error) {
      if (error.status === 412) return conflict(changes);
      fill(errors, errorBox(error));
      showFieldErrors(body, error.details);
    }
  }

  async function conflict(changes) {
    let current;
    let currentEtag;
    try {
      const answer = await get(`/${entity.path}/${id}`, { expand: entity.expand.join(",") });
      current = answer.data;
      currentEtag = answer.etag;
    } catch (error) {
      fill(errors, errorBox(error));
      return;
    }
    const mine = { ...record, ...changes };
    const rows = entity.fields.filter((f) => !f.readOnly).map((f) => {
      const differs = JSON.stringify(mine[f.name]) !== JSON.stringify(current[f.name]);
      return h("tr", { class: differs ? "differs" : "" }, h("th", {}, f.name),
        h("td", { class: "mine" }, show(mine[f.name])), h("td", { class: "theirs" }, show(current[f.name])));
    });
    fill(errors, h("section", { class: "conflict card", role: "alert" },
      h("h2", {}, "Conflict: this record changed since you opened it"),
      h("p", {}, "The server refused the save (412 PRECONDITION_FAILED: your ETag ", h("code", {}, etag),
        " is no longer current; the server's is ", h("code", {}, currentEtag), "). Compare and choose."),
      h("div", { class: "table-wrap" }, h("table", { class: "compare" },
        h("thead", {}, h("tr", {}, h("th", {}, "field"), h("th", {}, "Your version"), h("th", {}, "Server's current version"))),
        h("tbody", {}, rows))),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "primary", onclick: () => { fill(errors); send(changes, currentEtag); } }, "Save mine over theirs"),
        h("button", { type: "button", onclick: () => { fill(errors); record = current; etag = currentEtag; draw(); } }, "Discard mine, load theirs"))));
  }

  function remove() {
    const close = dialog(`Delete ${id}?`, h("p", {}, "This cannot be undone."), [h("button", {
      type: "button", class: "danger", onclick: async () => {
        close();
        try {
          await del(`/${entity.path}/${id}`);
          toast(`Deleted ${id}.`, "ok");
          location.hash = `#/records/${entity.path}`;
        } catch (error) {
          fill(errors, errorBox(error));
        }
      },
    }, "Delete")]);
  }

  fill(main, h("div", { class: "page-head" },
    h("h1", {}, h("a", { href: `#/records/${entity.path}` }, entity.title), " / ", h("code", {}, id))), errors, body);
  load();
  return null;
}

function show(value) {
  if (value === null || value === undefined) return h("span", { class: "muted" }, "—");
  return typeof value === "object" ? value.id ?? JSON.stringify(value) : String(value);
}

// --- create ----------------------------------------------------------------------------------

export function renderCreate(main, context, entity) {
  const errors = h("div");
  const canWrite = context.can("write");
  const form = h("form", { class: "card record-form", onsubmit: async (event) => {
    event.preventDefault();
    fill(errors);
    const values = readForm(form, entity, true);
    try {
      const { data } = await post(`/${entity.path}`, values);
      toast(`Created ${data.id}.`, "ok");
      location.hash = `#/records/${entity.path}/${data.id}`;
    } catch (error) {
      fill(errors, errorBox(error));
      showFieldErrors(form, error.details);
    }
  } },
  entity.fields.filter((f) => !f.readOnly).map((f) => fieldInput(f, undefined, !canWrite)),
  h("div", { class: "actions" }, guarded(canWrite, "write", "Create", { type: "submit", class: "primary" })));
  fill(main, h("div", { class: "page-head" },
    h("h1", {}, h("a", { href: `#/records/${entity.path}` }, entity.title), " / new")), errors, form);
  return null;
}
