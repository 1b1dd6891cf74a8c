// The console's only way to the server: Quiver's public HTTP API, with the key from sessionStorage.

const BASE = "/api/v1";
const STORAGE = "quiver.console.key";

/** An error answered in the contract's envelope (or a network failure, status 0). */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error || `The server answered ${status}.`);
    this.status = status;
    this.code = body?.code || (status ? "HTTP_" + status : "NETWORK");
    this.details = body?.details || null;
  }
}

export const key = {
  get: () => sessionStorage.getItem(STORAGE),
  set: (value) => sessionStorage.setItem(STORAGE, value),
  clear: () => sessionStorage.removeItem(STORAGE),
};

/** `path` under /api/v1 (or a full /api/v1 path) with `query` (object, skipping empty values). */
export function url(path, query) {
  const full = path.startsWith(BASE) ? path : BASE + path;
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.set(name, value);
  }
  const text = params.toString();
  return text ? `${full}?${text}` : full;
}

/**
 * One request; resolves to {status, data, meta, etag, body} or throws an ApiError.
 * `body` is sent as JSON unless it is FormData; `headers` are added to the key's.
 */
export async function request(method, path, { query, body, headers } = {}) {
  const init = { method, headers: { Authorization: `Bearer ${key.get()}`, ...headers } };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(url(path, query), init);
  } catch {
    throw new ApiError(0, { error: "The server could not be reached. Check the connection and try again." });
  }
  const parsed = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, parsed);
  return {
    status: response.status, data: parsed?.data, meta: parsed?.meta || {},
    etag: response.headers.get("ETag"), body: parsed,
  };
}

export const get = (path, query) => request("GET", path, { query });
export const post = (path, body, options) => request("POST", path, { body, ...options });
export const patch = (path, body, options) => request("PATCH", path, { body, ...options });
export const del = (path) => request("DELETE", path);

/** A file the API serves (an export's `result.url`), fetched with the key, as a Blob. */
export async function download(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${key.get()}` } });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  const disposition = response.headers.get("Content-Disposition") || "";
  const name = /filename="?([^";]+)"?/.exec(disposition)?.[1] || "download";
  return { blob: await response.blob(), name };
}

/** An EventSource on /api/v1/stream (EventSource cannot send headers: `access_token`). */
export function stream(query) {
  return new EventSource(url("/stream", { ...query, access_token: key.get() }));
}

let specPromise = null;

/** The public OpenAPI document (no key needed), fetched once. */
export function spec() {
  specPromise ||= fetch(`${BASE}/openapi.json`).then((r) => r.json());
  return specPromise;
}
