// Jobs: exports and imports with live progress (polled from GET /jobs while any is unfinished),
// cancel, download of a finished export (fetched with the key, saved from a Blob), import
// failures, and starting an import from a file.

import { download, get, post } from "../api.js";
import { badge, empty, errorBox, fill, guarded, h, progress, time, toast } from "../ui.js";

const FINISHED = ["succeeded", "failed", "canceled"];
const POLL_MS = 1000;
const IDLE_POLL_MS = 5000;
const STATUS_KIND = { succeeded: "ok", failed: "bad", canceled: "", running: "warn", queued: "" };

async function save(job) {
  const { blob, name } = await download(job.result.url);
  const link = h("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

function failures(job) {
  const list = job.result?.failures || [];
  if (!list.length) return null;
  return h("details", { class: "failures" }, h("summary", {}, `${job.result.failed} failed ${job.result.failed === 1 ? "row" : "rows"}`),
    h("ul", {}, list.map((f) => h("li", {}, h("strong", {}, `row ${f.index}`), `: ${f.error}`,
      f.details ? h("ul", {}, Object.entries(f.details).map(([field, messages]) =>
        h("li", {}, h("code", {}, field), `: ${[].concat(messages).join(" ")}`))) : null))));
}

function summary(job) {
  const result = job.result || {};
  if (job.type === "export" && job.status === "succeeded") return `${result.rows} rows, ${result.format}, ${result.size} bytes`;
  if (job.type === "import" && result.created !== undefined) return `${result.created} created, ${result.failed} failed`;
  return job.error || "";
}

export function render(main, context, [focus]) {
  const canWrite = context.can("write");
  const errors = h("div");
  const list = h("div", { class: "jobs" });
  let timer = null;
  let stopped = false;

  function card(job) {
    const done = job.progress?.done ?? 0;
    const total = job.progress?.total ?? 0;
    const running = !FINISHED.includes(job.status);
    return h("article", { class: `card job${job.id === focus ? " focus" : ""}`, dataset: { id: job.id, status: job.status } },
      h("header", {}, h("strong", {}, `${job.type[0].toUpperCase()}${job.type.slice(1)}${job.entity ? ` of ${job.entity} records` : ""}`), " ", h("code", {}, job.id), " ",
        badge(job.status, STATUS_KIND[job.status])),
      progress(job.status === "succeeded" && !total ? 1 : done, job.status === "succeeded" && !total ? 1 : total),
      h("div", { class: "job-meta muted" }, "created ", time(job.createdAt),
        job.finishedAt ? [" · finished ", time(job.finishedAt)] : null,
        summary(job) ? [" · ", h("span", { class: "job-summary" }, summary(job))] : null),
      failures(job),
      h("div", { class: "actions" },
        running ? guarded(canWrite, "write", "Cancel", { class: "danger small", onclick: () => cancel(job) }) : null,
        job.type === "export" && job.status === "succeeded" && job.result?.url
          ? h("button", { type: "button", class: "primary small", onclick: () => save(job).catch((e) => fill(errors, errorBox(e))) }, "Download")
          : null));
  }

  async function cancel(job) {
    try {
      await post(`/jobs/${job.id}/cancel`);
      toast(`Cancel requested for ${job.id}.`, "ok");
    } catch (error) {
      fill(errors, errorBox(error));
    }
    load();
  }

  async function load() {
    clearTimeout(timer);
    let busy = false;
    try {
      const { data } = await get("/jobs", { limit: 25 });
      busy = data.some((job) => !FINISHED.includes(job.status));
      fill(list, data.length ? data.map(card) : empty("No jobs yet. Start an export from a Records page, or import a file above."));
    } catch (error) {
      fill(errors, errorBox(error));
    }
    if (!stopped) timer = setTimeout(load, busy ? POLL_MS : IDLE_POLL_MS);
  }

  const importForm = h("form", { class: "card toolbar import", onsubmit: async (event) => {
    event.preventDefault();
    fill(errors);
    const form = new FormData();
    form.append("file", importForm.elements.file.files[0]);
    try {
      const { data } = await post(`/import/${importForm.elements.entity.value}/file`, form);
      toast(`Import ${data.id} started.`, "ok");
      load();
    } catch (error) {
      fill(errors, errorBox(error));
    }
  } },
  h("strong", {}, "Import a file"),
  h("select", { name: "entity", "aria-label": "Entity" }, context.entities.map((e) => h("option", { value: e.path }, e.title))),
  h("input", { type: "file", name: "file", accept: ".csv,.jsonl,.ndjson", required: true, "aria-label": "CSV or JSONL file" }),
  guarded(canWrite, "write", "Start import", { type: "submit", class: "primary" }));

  fill(main, h("div", { class: "page-head" }, h("h1", {}, "Jobs")), importForm, errors, list);
  load();
  return () => { stopped = true; clearTimeout(timer); };
}
