// Records of every entity, generated from the OpenAPI document (see schema.js): the list with
// filters, sort, search, expand and cursor paging, bulk delete and export of the current
// filters. One record, its form and the create form are in record.js.

import { get, post } from "../api.js";
import { badge, dialog, empty, errorBox, fill, guarded, h, time, toast } from "../ui.js";
import { expanded, renderCreate, renderRecord } from "./record.js";

const states = new Map();  // per entity path: the list's filters, sort, search, expand and paging

function stateOf(entity) {
  if (!states.has(entity.path)) {
    states.set(entity.path, { filters: [], q: "", sort: "-createdAt", expand: [], cursors: [null], limit: 20 });
  }
  return states.get(entity.path);
}

function filterQuery(state) {
  const query = {};
  for (const { field, op, value } of state.filters) {
    if (field) query[op === "eq" ? field : `${field}[${op}]`] = value;
  }
  if (state.q) query.q = state.q;
  return query;
}

export function render(main, context, [path, id]) {
  const entity = context.entities.find((e) => e.path === path);
  if (!entity) {
    fill(main, h("h1", {}, "Records"), h("p", { class: "notice" }, `No entity ${path}.`));
    return null;
  }
  if (id === "new") return renderCreate(main, context, entity);
  if (id) return renderRecord(main, context, entity, id);
  return renderList(main, context, entity);
}

// --- list ------------------------------------------------------------------------------------

function renderList(main, context, entity) {
  const state = stateOf(entity);
  const canWrite = context.can("write");
  const selected = new Set();
  const status = h("span", { class: "muted" });
  const tableBox = h("div", { class: "table-wrap" });
  const errors = h("div");
  const pager = h("div", { class: "pager" });
  const deleteButton = guarded(canWrite, "write", "Delete selected", { class: "danger", onclick: bulkDelete });

  const search = entity.search ? h("input", {
    type: "search", placeholder: "Search…", value: state.q, title: entity.search, "aria-label": "Search",
  }) : null;
  const sort = h("select", { "aria-label": "Sort" }, entity.sorts.flatMap((field) => [
    h("option", { value: `-${field}`, selected: state.sort === `-${field}` }, `${field} ↓`),
    h("option", { value: field, selected: state.sort === field }, `${field} ↑`),
  ]));
  const expand = entity.expand.map((name) => h("label", { class: "check" },
    h("input", { type: "checkbox", value: name, checked: state.expand.includes(name) }), ` ${name}`));
  const filterRows = h("div", { class: "filters" });

  function addFilterRow(filter = { field: Object.keys(entity.filters)[0], op: "eq", value: "" }) {
    const ops = h("select", { "aria-label": "Operator", class: "filter-op" });
    const fieldSelect = h("select", { "aria-label": "Filter field", class: "filter-field" },
      Object.keys(entity.filters).map((f) => h("option", { value: f, selected: f === filter.field }, f)));
    const setOps = () => fill(ops, entity.filters[fieldSelect.value].map((op) =>
      h("option", { value: op, selected: op === filter.op }, op)));
    fieldSelect.addEventListener("change", setOps);
    setOps();
    const row = h("div", { class: "filter" }, fieldSelect, ops,
      h("input", { "aria-label": "Filter value", class: "filter-value", value: filter.value, placeholder: "value" }),
      h("button", { type: "button", class: "icon", title: "Remove filter", onclick: () => row.remove() }, "✕"));
    filterRows.append(row);
  }
  state.filters.forEach(addFilterRow);

  function readToolbar() {
    state.q = search ? search.value.trim() : "";
    state.sort = sort.value;
    state.expand = expand.map((l) => l.firstChild).filter((c) => c.checked).map((c) => c.value);
    state.filters = [...filterRows.children].map((row) => ({
      field: row.querySelector(".filter-field").value, op: row.querySelector(".filter-op").value,
      value: row.querySelector(".filter-value").value,
    }));
  }

  async function load() {
    fill(errors);
    try {
      const cursor = state.cursors[state.cursors.length - 1];
      const { data, meta } = await get(`/${entity.path}`, {
        ...filterQuery(state), sort: state.sort, limit: state.limit, cursor,
        expand: state.expand.join(","),
      });
      selected.clear();
      drawTable(data);
      fill(status, `${meta.total} ${meta.total === 1 ? "record" : "records"}`);
      fill(pager,
        h("button", { type: "button", disabled: state.cursors.length < 2, onclick: () => { state.cursors.pop(); load(); } }, "← Previous"),
        h("span", { class: "muted" }, `Page ${state.cursors.length}`),
        h("button", { type: "button", disabled: !meta.nextCursor, onclick: () => { state.cursors.push(meta.nextCursor); load(); } }, "Next →"));
    } catch (error) {
      fill(errors, errorBox(error));
    }
    updateSelection();
  }

  function apply(event) {
    event?.preventDefault();
    readToolbar();
    state.cursors = [null];
    load();
  }

  function updateSelection() {
    deleteButton.textContent = selected.size ? `Delete selected (${selected.size})` : "Delete selected";
    deleteButton.disabled = !canWrite || !selected.size;
  }

  function drawTable(rows) {
    const columns = listColumns(entity).filter((f) => !state.expand.some((name) => f.name === `${name}Id`));
    if (!rows.length) {
      fill(tableBox, empty("No records match."));
      return;
    }
    const all = h("input", { type: "checkbox", "aria-label": "Select all", disabled: !canWrite });
    all.addEventListener("change", () => {
      for (const box of tableBox.querySelectorAll("tbody input[type=checkbox]")) {
        box.checked = all.checked;
        box.dispatchEvent(new Event("change"));
      }
    });
    fill(tableBox, h("table", { class: "records" },
      h("thead", {}, h("tr", {}, h("th", { class: "pick" }, all), columns.map((f) => h("th", {}, f.name)),
        state.expand.map((name) => h("th", {}, name)))),
      h("tbody", {}, rows.map((record) => {
        const box = h("input", { type: "checkbox", "aria-label": `Select ${record.id}`, disabled: !canWrite });
        box.addEventListener("change", () => {
          if (box.checked) selected.add(record.id); else selected.delete(record.id);
          updateSelection();
        });
        return h("tr", { dataset: { id: record.id } }, h("td", { class: "pick", "data-label": "select" }, box),
          columns.map((f) => h("td", { "data-label": f.name }, cell(entity, f, record))),
          state.expand.map((name) => h("td", { "data-label": name }, expanded(context, entity, name, record[name]))));
      }))));
  }

  async function bulkDelete() {
    const ids = [...selected];
    const confirmAndDelete = async () => {
      close();
      try {
        const { data } = await post(`/${entity.path}/bulk-delete`, { ids });
        toast(`Deleted ${data.deleted}${data.notFound.length ? `; ${data.notFound.length} were already gone` : ""}.`, "ok");
        load();
      } catch (error) {
        fill(errors, errorBox(error));
      }
    };
    const close = dialog(`Delete ${ids.length} ${entity.path}?`, h("p", {}, "This cannot be undone."),
      [h("button", { type: "button", class: "danger", onclick: confirmAndDelete }, `Delete ${ids.length}`)]);
  }

  async function startExport(format) {
    readToolbar();
    try {
      const { data } = await post(`/export/${entity.path}`, { format, filter: { ...filterQuery(state), sort: state.sort } });
      toast(`Export ${data.id} started.`, "ok");
      location.hash = `#/jobs/${data.id}`;
    } catch (error) {
      fill(errors, errorBox(error));
    }
  }

  const toolbar = h("form", { class: "toolbar", onsubmit: apply },
    search, h("label", { class: "inline" }, "Sort ", sort),
    entity.expand.length ? h("span", { class: "expand" }, "Expand:", expand) : null,
    h("button", { type: "button", onclick: () => addFilterRow() }, "+ Filter"),
    h("button", { type: "submit", class: "primary" }, "Apply"));

  fill(main,
    h("div", { class: "page-head" }, h("h1", {}, entity.title), status,
      h("div", { class: "actions" },
        guarded(canWrite, "write", `New ${entity.path.replace(/s$/, "")}`, { class: "primary", onclick: () => { location.hash = `#/records/${entity.path}/new`; } }),
        deleteButton,
        guarded(canWrite, "write", "Export CSV", { onclick: () => startExport("csv") }),
        guarded(canWrite, "write", "Export JSONL", { onclick: () => startExport("jsonl") }))),
    toolbar, filterRows, errors, tableBox, pager);
  load();
  return null;
}

/** The list's columns: the id, the short writable fields, and when the record last changed. */
function listColumns(entity) {
  return entity.fields.filter((f) => f.name === "id" || f.name === "updatedAt" || (!f.readOnly && !(f.maxLength > 1000)));
}

function cell(entity, field, record) {
  const value = record[field.name];
  if (value === null || value === undefined) return h("span", { class: "muted" }, "—");
  if (field.name === "id") return h("a", { class: "id", title: value, href: `#/records/${entity.path}/${value}` }, value);
  if (field.refersTo) return h("a", { class: "id", title: value, href: `#/records/${field.refersTo}/${value}` }, value);
  if (field.format === "date-time") return time(value);
  if (field.enum) return badge(value, `v-${value}`);
  return String(value);
}
