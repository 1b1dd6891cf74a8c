// The console's shell: sign-in, the signed-in key's scopes, navigation and the hash router.

import { ApiError, get, key } from "./api.js";
import { entities } from "./schema.js";
import { badge, errorBox, fill, h } from "./ui.js";
import * as records from "./pages/records.js";
import * as webhooks from "./pages/webhooks.js";
import * as jobs from "./pages/jobs.js";
import * as keys from "./pages/keys.js";
import * as events from "./pages/events.js";

const $ = (id) => document.getElementById(id);
const PAGES = [
  { name: "webhooks", title: "Webhooks", scope: "admin", page: webhooks },
  { name: "jobs", title: "Jobs", scope: "read", page: jobs },
  { name: "keys", title: "API keys", scope: "admin", page: keys },
  { name: "events", title: "Events", scope: "read", page: events },
];

let context = null;
let cleanup = null;

/** `admin` implies every scope; `write` does not imply `read` (the contract's rule). */
function canFor(scopes) {
  return (scope) => scopes.includes("admin") || scopes.includes(scope);
}

async function signIn(secret) {
  key.set(secret);
  try {
    const me = (await get("/api-keys/current")).data;
    context = { me, can: canFor(me.scopes), entities: await entities() };
  } catch (error) {
    key.clear();
    throw error;
  }
}

/** Forget the key, then load the page afresh: nothing the last key saw stays in memory. */
function signOut() {
  if (cleanup) cleanup();
  key.clear();
  location.replace(location.pathname);
}

function showSignIn(error) {
  $("shell").hidden = true;
  $("signin").hidden = false;
  fill($("signin-error"), error ? errorBox(error) : null);
  $("signin-key").value = "";
  $("signin-key").focus();
}

function navLink(href, title, allowed, scope) {
  return h("a", {
    href: allowed ? href : null, class: allowed ? "" : "disabled", "aria-disabled": allowed ? null : "true",
    title: allowed ? null : `Needs the ${scope} scope`, dataset: { href },
  }, title, allowed ? null : h("span", { class: "lock" }, scope));
}

function renderShell() {
  const { me, can } = context;
  fill($("whoami"), h("span", { class: "key-name" }, me.name), " ", h("code", {}, `${me.prefix}…`), " ",
    me.scopes.map((s) => badge(s, `scope-${s}`)));
  fill($("nav"),
    h("div", { class: "nav-group" }, "Records"),
    context.entities.map((e) => navLink(`#/records/${e.path}`, e.title, can("read"), "read")),
    h("div", { class: "nav-group" }, "Operations"),
    PAGES.map((p) => navLink(`#/${p.name}`, p.title, can(p.scope), p.scope)));
  $("signin").hidden = true;
  $("shell").hidden = false;
}

function route() {
  if (!context) return;
  if (cleanup) cleanup();
  cleanup = null;
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  if (!parts.length || (parts[0] === "records" && !parts[1])) {
    location.replace(`#/records/${context.entities[0].path}`);
    return;
  }
  for (const link of $("nav").querySelectorAll("a")) {
    link.classList.toggle("active", location.hash.startsWith(link.dataset.href));
  }
  document.body.classList.remove("nav-open");
  $("nav-toggle").setAttribute("aria-expanded", "false");
  const main = fill($("main"));
  const page = parts[0] === "records" ? { page: records, scope: "read", title: "Records" }
    : PAGES.find((p) => p.name === parts[0]);
  if (!page) {
    fill(main, errorBox(new ApiError(404, { error: `There is no page ${parts[0]}.`, code: "NOT_FOUND" })));
    return;
  }
  if (!context.can(page.scope)) {
    fill(main, h("h1", {}, page.title), h("p", { class: "notice" },
      `This page needs a key with the ${page.scope} scope; this key has ${context.me.scopes.join(", ")}.`));
    return;
  }
  cleanup = page.page.render(main, context, parts.slice(1)) || null;
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = event.submitter;
  button.disabled = true;
  try {
    await signIn($("signin-key").value.trim());
    renderShell();
    route();
  } catch (error) {
    showSignIn(error);
  } finally {
    button.disabled = false;
  }
});
$("signout").addEventListener("click", signOut);
$("nav-toggle").addEventListener("click", () => {
  const open = document.body.classList.toggle("nav-open");
  $("nav-toggle").setAttribute("aria-expanded", String(open));
});
window.addEventListener("hashchange", route);

(async () => {
  const saved = key.get();
  if (!saved) return showSignIn();
  try {
    await signIn(saved);
    renderShell();
    route();
  } catch (error) {
    showSignIn(error);
  }
})();
