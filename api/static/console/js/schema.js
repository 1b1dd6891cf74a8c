// What the console knows of the entities, read from the public OpenAPI document only:
// an entity is a path with `/{path}/{record_id}` and `/{path}/bulk-delete` routes.

import { spec } from "./api.js";

const ROOT = "/api/v1/";

function resolve(doc, node) {
  while (node?.$ref) node = doc.components.schemas[node.$ref.split("/").pop()];
  return node;
}

const refName = (node) => node?.$ref?.split("/").pop();

function bodySchema(doc, operation) {
  return resolve(doc, operation?.requestBody?.content?.["application/json"]?.schema) || { properties: {} };
}

function describe(doc, path) {
  const list = doc.paths[ROOT + path].get;
  const item = doc.paths[`${ROOT}${path}/{record_id}`];
  const params = Object.fromEntries((list.parameters || []).map((p) => [p.name, p]));
  const listed = resolve(doc, list.responses["200"].content["application/json"].schema);
  const recordRef = refName(listed.properties.data.items);
  const record = resolve(doc, listed.properties.data.items);
  const input = bodySchema(doc, doc.paths[ROOT + path].post);
  const editable = bodySchema(doc, item.patch);
  const expand = params.expand?.schema.items.enum || [];
  const fields = [];
  for (const [name, prop] of Object.entries(record.properties)) {
    if (expand.includes(name)) continue;
    const writable = input.properties[name] || editable.properties[name];
    fields.push({
      name, type: prop.type, format: prop.format, enum: prop.enum, nullable: !!prop.nullable,
      readOnly: !writable, required: (input.required || []).includes(name),
      maxLength: writable?.maxLength, refersTo: null,
    });
  }
  const relations = expand.map((name) => ({ name, schema: refName(record.properties[name].allOf?.[0]) }));
  const filters = {};
  for (const p of list.parameters || []) {
    if (p.style === "deepObject") filters[p.name] = Object.keys(p.schema.properties || {});
  }
  const label = fields.find((f) => f.required && !f.name.endsWith("Id") && f.type === "string")?.name || "id";
  return {
    path, recordSchema: recordRef, fields, relations, filters, label,
    title: path.charAt(0).toUpperCase() + path.slice(1),
    sorts: (params.sort?.schema.items.enum || []).filter((s) => !s.startsWith("-")),
    search: params.q ? params.q.description : null,
    expand, limitMax: params.limit?.schema.maximum || 100,
  };
}

let cache = null;

/** Every entity of the registry: {path, title, fields, filters, sorts, search, expand, relations, label}. */
export async function entities() {
  if (cache) return cache;
  const doc = await spec();
  const found = Object.keys(doc.paths)
    .map((p) => /^\/api\/v1\/([A-Za-z0-9_-]+)\/bulk-delete$/.exec(p)?.[1])
    .filter((path) => path && doc.paths[`${ROOT}${path}/{record_id}`] && doc.paths[ROOT + path]?.get)
    .sort()
    .map((path) => describe(doc, path));
  for (const entity of found) {
    for (const relation of entity.relations) {
      const target = found.find((e) => relation.schema === e.recordSchema
        || relation.schema === `${e.recordSchema}Record`);
      const field = entity.fields.find((f) => f.name === `${relation.name}Id`);
      if (target && field) Object.assign(field, { refersTo: target.path, refersToLabel: target.label });
    }
  }
  cache = found;
  return found;
}

/** The event types the API knows (the `type` filter of GET /events). */
export async function eventTypes() {
  const doc = await spec();
  const param = (doc.paths[`${ROOT}events`].get.parameters || []).find((p) => p.name === "type");
  return param?.schema.items?.enum || [];
}
