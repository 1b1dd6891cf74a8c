"""The operator console at `/console`, driven in real headless Chromium with Playwright.

One gunicorn (`WEBHOOK_ALLOW_PRIVATE=true`) and one real worker (`python -m jobs.worker`, a
webhook retry an hour away so a failed attempt stays failed until it is redelivered) serve
the module; each test opens a fresh browser context on a fresh account. The console is a
client of the public API only, so what a test does behind the page's back goes through the
API too. With `CONSOLE_SCREENSHOTS=1` (`make screenshots`) the screenshots land in
`tests/screenshots/console/` for the README; otherwise in a temporary folder.
"""

import csv
import io
import json
import os
import re
import signal
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from tests.procs import ROOT, PostServer, free_port, read_body, respond, start_gunicorn, stop_process
from tests.test_jobs import WorkerProcess

LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run"]


@pytest.fixture(scope="module")
def gunicorn(app, backend_env):
    """A real gunicorn for the console (private webhook receivers allowed; 32 threads, so 16
    streams per process): its base URL and process."""
    port = free_port()
    env = {**os.environ, **backend_env, "WEB_CONCURRENCY": "2", "WEB_THREADS": "32",
           "LOG_LEVEL": "WARNING", "WEBHOOK_ALLOW_PRIVATE": "true"}
    process = start_gunicorn(env, port)
    yield f"http://127.0.0.1:{port}", process
    stop_process(process)


@pytest.fixture(scope="module")
def server(gunicorn) -> str:
    return gunicorn[0]


@pytest.fixture(scope="module")
def worker(app, backend_env, tmp_path_factory):
    env = {**os.environ, **backend_env, "LOG_LEVEL": "WARNING", "WEBHOOK_ALLOW_PRIVATE": "true",
           "WEBHOOK_RETRY_SCHEDULE": "1h", "WEBHOOK_TIMEOUT": "2"}
    process = WorkerProcess(env, tmp_path_factory.mktemp("console-worker") / "worker.log").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def chromium_browser(chromium):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    """Where screenshots go: the README's folder with CONSOLE_SCREENSHOTS=1, else a temporary one."""
    if os.environ.get("CONSOLE_SCREENSHOTS") == "1":
        folder = ROOT / "tests" / "screenshots" / "console"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("console-screenshots")


@pytest.fixture
def open_console(chromium_browser, server):
    """`open_console(key, viewport=LAPTOP)`: a fresh browser context signed in with `key`.

    At the end, no page may have logged a content security policy violation.
    """
    contexts = []
    messages = []

    def open_(key: str, viewport: dict = LAPTOP):
        context = chromium_browser.new_context(viewport=viewport, accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda message: messages.append(message.text))
        page.goto(f"{server}/console")
        sign_in(page, key)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not [m for m in messages if "Content Security Policy" in m], messages


def sign_in(page, key: str) -> None:
    page.fill("#signin-key", key)
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#whoami")).to_contain_text(key[:12])


def screenshot(page, path, full_page: bool = False) -> None:
    """A screenshot of the page without its passing toasts."""
    page.evaluate("document.getElementById('toasts').replaceChildren()")
    page.screenshot(path=path, full_page=full_page)


def created_key(page) -> str:
    return page.locator("#dialog input.secret").input_value()


# --- the static files ------------------------------------------------------------------------------


def test_the_console_is_served_without_a_key_under_a_strict_policy(client):
    assert client.get("/console").get_data() == client.get("/console/").get_data()
    page = client.get("/console")
    assert page.status_code == 200 and page.mimetype == "text/html"
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy
    html = page.get_data(as_text=True)
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html))  # no inline script
    assert "style=" not in html and "<style" not in html
    script = client.get("/console/js/app.js")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    assert client.get("/console/js/nothing.js").get_json()["code"] == "NOT_FOUND"


# --- sign-in and scopes ----------------------------------------------------------------------------


def seed(api) -> None:
    """A small team's worth of records, for the list and its screenshot."""
    ann = api.create("users", name="Ann Lee", email="ann@example.com")
    bob = api.create("users", name="Bob Stone", email="bob@example.com")
    site = api.create("projects", name="Website")
    app = api.create("projects", name="Mobile app")
    for title, status, priority, who, project, due in [
            ("Draft the launch post", "completed", "medium", ann, site, "2026-11-20T17:00:00Z"),
            ("Fix the signup form", "in_progress", "high", bob, site, "2026-12-08T12:00:00Z"),
            ("Ship offline mode", "todo", "high", ann, app, "2026-12-15T09:00:00Z"),
            ("Review crash reports", "todo", "medium", bob, app, None),
            ("Update the privacy page", "todo", "low", None, site, None),
            ("Plan the Q1 roadmap", "in_progress", "medium", ann, None, "2027-01-05T10:00:00Z")]:
        api.create("tasks", title=title, status=status, priority=priority, dueAt=due,
                   assigneeId=who and who["id"], projectId=project and project["id"])


def test_admin_key_signs_in_and_sees_every_page_and_action(open_console, api, shots):
    seed(api)
    page = open_console(api.key)
    expect(page).to_have_url(re.compile(r"/console#/records/comments$"))
    page.click("#nav a[href='#/records/tasks']")
    expect(page.locator("table.records tbody tr")).to_have_count(6)
    page.check("label.check:has-text('assignee') input")
    page.check("label.check:has-text('project') input")
    page.click("button:has-text('Apply')")
    expect(page.locator("table.records tbody td[data-label=assignee]").first).to_have_text("Ann Lee")
    expect(page.locator("#nav a.disabled")).to_have_count(0)
    expect(page.get_by_role("button", name="New task")).to_be_enabled()
    assert api.key not in page.url
    assert page.context.cookies() == []
    assert page.evaluate("sessionStorage.getItem('quiver.console.key')") == api.key
    screenshot(page, shots / "records.png")

    page.click("#signout")
    expect(page.locator("#signin-form")).to_be_visible()
    expect(page.locator("#shell")).to_be_hidden()
    expect(page.locator("table.records")).to_have_count(0)  # the page was loaded afresh
    assert page.evaluate("sessionStorage.length") == 0


def test_a_read_only_key_sees_what_it_may_do_and_admin_actions_disabled(open_console, account, api):
    task = api.create("tasks", title="Look, don't touch")
    reader = account.key("read")
    page = open_console(reader.key)
    expect(page.locator("#whoami .badge")).to_have_text(["read"])
    for href in ("#/webhooks", "#/keys"):
        link = page.locator(f"#nav a[data-href='{href}']")
        expect(link).to_have_attribute("aria-disabled", "true")
        expect(link).to_have_attribute("title", "Needs the admin scope")
    page.click("#nav a[href='#/records/tasks']")
    expect(page.locator("table.records tbody tr")).to_have_count(1)
    for name in ("New task", "Delete selected", "Export CSV", "Export JSONL"):
        expect(page.get_by_role("button", name=name)).to_be_disabled()
    page.click(f"a[href='#/records/tasks/{task['id']}']")
    expect(page.locator("#field-title")).to_have_value("Look, don't touch")
    expect(page.get_by_role("button", name="Save")).to_be_disabled()
    expect(page.get_by_role("button", name="Delete")).to_be_disabled()
    page.goto(page.url.split("#")[0] + "#/keys")
    expect(page.locator("main .notice")).to_contain_text("needs a key with the admin scope")


def test_a_bad_key_is_refused_in_the_contracts_words(chromium_browser, server):
    context = chromium_browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.goto(f"{server}/console/")
    page.fill("#signin-key", "sk_" + "x" * 40)
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#signin-error .error")).to_contain_text("Invalid API key.")
    expect(page.locator("#signin-error .code")).to_have_text("UNAUTHORIZED")
    context.close()


def test_phone_layout_collapses_the_nav(open_console, api, shots):
    api.create("tasks", title="On the go", priority="high")
    page = open_console(api.key, PHONE)
    page.click("#nav-toggle") if not page.locator("#nav").is_visible() else None
    page.click("#nav a[href='#/records/tasks']")
    expect(page.locator("#nav")).to_be_hidden()
    expect(page.locator("table.records tbody tr")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, shots / "phone-records.png")
    page.click("#nav-toggle")
    expect(page.locator("#nav")).to_be_visible()
    screenshot(page, shots / "phone-nav.png")


# --- records ---------------------------------------------------------------------------------------


def test_create_edit_and_a_conflict_shows_both_versions(open_console, api, shots):
    ann = api.create("users", name="Ann", email="ann@example.com")
    page = open_console(api.key)
    page.goto(page.url.split("#")[0] + "#/records/tasks/new")
    expect(page.locator("#choices-assigneeId option")).to_have_text(["Ann"])  # suggested by name
    page.fill("#field-title", "Write the console")
    page.select_option("#field-priority", "high")
    page.fill("#field-assigneeId", ann["id"])
    page.click("button:has-text('Create')")
    expect(page).to_have_url(re.compile(r"#/records/tasks/tsk_"))
    task_id = page.url.rsplit("/", 1)[1]
    created = api.get(f"/tasks/{task_id}").get_json()["data"]
    assert (created["priority"], created["assigneeId"]) == ("high", ann["id"])

    page.fill("#field-title", "Write the console, well")
    page.click("button:has-text('Save')")
    expect(page.locator(".toast", has_text="Saved.")).to_have_count(1)
    assert api.get(f"/tasks/{task_id}").get_json()["data"]["title"] == "Write the console, well"

    behind = api.patch(f"/tasks/{task_id}", json={"status": "completed", "title": "Theirs"})
    assert behind.status_code == 200
    page.fill("#field-title", "Mine")
    page.click("button:has-text('Save')")
    conflict = page.locator(".conflict")
    expect(conflict).to_contain_text("Conflict")
    expect(conflict.locator("tr.differs", has_text="title").locator("td.mine")).to_have_text("Mine")
    expect(conflict.locator("tr.differs", has_text="title").locator("td.theirs")).to_have_text("Theirs")
    expect(conflict.locator("tr.differs", has_text="status").locator("td.theirs")).to_have_text("completed")
    screenshot(page, shots / "record-conflict.png", full_page=True)

    page.evaluate("document.getElementById('toasts').replaceChildren()")
    page.click("button:has-text('Save mine over theirs')")
    expect(page.locator(".toast", has_text="Saved.")).to_have_count(1)
    shown = api.get(f"/tasks/{task_id}").get_json()["data"]
    assert (shown["title"], shown["status"]) == ("Mine", "completed")
    expect(page.locator("#field-status")).to_have_value("completed")

    page.click("main button:has-text('Delete')")
    page.click("#dialog button:has-text('Delete')")
    expect(page).to_have_url(re.compile(r"#/records/tasks$"))
    assert api.get(f"/tasks/{task_id}").status_code == 404


def test_a_new_entity_in_the_openapi_document_gets_its_pages_with_no_console_code(
        chromium_browser, server, api):
    """The console knows entities only from the OpenAPI document: given one with a `labels`
    entity beside the others (here the projects' operations under another path), it shows it."""
    spec = requests.get(f"{server}/api/v1/openapi.json", timeout=10).json()
    for path, item in list(spec["paths"].items()):
        if path.startswith("/api/v1/projects"):
            spec["paths"][path.replace("/projects", "/labels")] = item
    context = chromium_browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.route("**/api/v1/openapi.json", lambda route: route.fulfill(json=spec))
    page.goto(f"{server}/console")
    sign_in(page, api.key)
    page.click("#nav a[href='#/records/labels']")
    expect(page.locator("main h1")).to_have_text("Labels")
    expect(page.get_by_role("button", name="New label")).to_be_enabled()
    sorts = page.locator("main select[aria-label=Sort] option")
    expect(sorts).to_contain_text(["createdAt ↓", "name ↑"])
    expect(page.locator("main .error")).to_contain_text("NOT_FOUND")  # the real server has no labels
    context.close()


def test_validation_errors_appear_under_their_fields(open_console, api):
    page = open_console(api.key)
    page.goto(page.url.split("#")[0] + "#/records/users/new")
    page.fill("#field-name", "Ann")
    page.fill("#field-email", "not an email")
    page.click("button:has-text('Create')")
    expect(page.locator("main .error .code")).to_have_text("VALIDATION_FAILED")
    expect(page.locator("[data-error-for=email]")).not_to_be_empty()


def test_list_filters_search_expand_paging_and_bulk_delete(open_console, api):
    ann = api.create("users", name="Ann", email="ann@example.com")
    for index in range(25):
        api.create("tasks", title=f"Job {index:02d}", assigneeId=ann["id"] if index < 3 else None)
    page = open_console(api.key)
    page.click("#nav a[href='#/records/tasks']")
    expect(page.locator("table.records tbody tr")).to_have_count(20)
    page.click("button:has-text('Next →')")
    expect(page.locator("table.records tbody tr")).to_have_count(5)
    page.click("button:has-text('← Previous')")
    expect(page.locator("table.records tbody tr")).to_have_count(20)

    page.click("button:has-text('+ Filter')")
    page.select_option(".filter-field", "assigneeId")
    page.select_option(".filter-op", "eq")
    page.fill(".filter-value", ann["id"])
    page.check("label.check:has-text('assignee') input")
    page.click("button:has-text('Apply')")
    rows = page.locator("table.records tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first.locator("td[data-label=assignee]")).to_have_text("Ann")

    page.fill("input[type=search]", "Job 01")
    page.click("button:has-text('Apply')")
    expect(rows).to_have_count(1)
    rows.first.locator("input[type=checkbox]").check()
    page.click("button:has-text('Delete selected (1)')")
    page.click("#dialog button:has-text('Delete 1')")
    expect(page.locator(".toast", has_text="Deleted 1")).to_be_visible()
    expect(page.locator("main .empty")).to_be_visible()
    assert api.get("/tasks?q=Job%2001").get_json()["meta"]["total"] == 0


# --- jobs, before the module's worker starts ------------------------------------------------------


def test_a_queued_export_is_canceled_and_only_a_write_key_may_cancel(open_console, account, api):
    """Runs before any test here starts the worker (file order), so the export stays queued."""
    started = api.post("/export/tasks", json={"format": "jsonl"})
    assert started.status_code == 202
    job_id = started.get_json()["data"]["id"]
    reader = open_console(account.key("read").key)
    reader.click("#nav a[href='#/jobs']")
    queued = reader.locator(f"article.job[data-id='{job_id}']")
    expect(queued).to_have_attribute("data-status", "queued")
    expect(queued.get_by_role("button", name="Cancel")).to_be_disabled()

    page = open_console(api.key)
    page.click("#nav a[href='#/jobs']")
    job = page.locator(f"article.job[data-id='{job_id}']")
    job.get_by_role("button", name="Cancel").click()
    expect(job).to_have_attribute("data-status", "canceled")
    expect(job.locator(".job-summary")).to_have_text("Canceled before it started.")
    expect(job.get_by_role("button", name="Cancel")).to_have_count(0)
    assert api.get(f"/jobs/{job_id}").get_json()["data"]["status"] == "canceled"


# --- webhooks --------------------------------------------------------------------------------------


class Receiver:
    """A local webhook receiver answering `status` (changeable) to every POST."""

    def __init__(self):
        self.status = 500
        self.received = []

        def on_post(handler):
            self.received.append(read_body(handler))
            respond(handler, self.status, body=b"fine" if self.status < 300 else b"broken")

        self.http = PostServer(on_post)


def test_a_failed_delivery_is_redelivered_after_the_receiver_is_fixed(open_console, api, worker, shots):
    receiver = Receiver()
    try:
        page = open_console(api.key)
        page.click("#nav a[href='#/webhooks']")
        page.click("button:has-text('New webhook')")
        page.fill("#hook-url", receiver.http.url)
        page.fill("#hook-description", "Ops receiver")
        page.click("#dialog button:has-text('Create webhook')")
        expect(page.locator("#dialog input.secret")).to_have_value(re.compile(r"^whsec_"))
        page.click("#dialog button:has-text('Close')")
        page.click(f"a:has-text('{receiver.http.url}')")
        expect(page.locator(".page-head .badge")).to_have_text("active")

        api.create("tasks", title="Tell the receiver")
        failed = page.locator("table.deliveries tr[data-status=failed]")
        expect(failed).to_have_count(1, timeout=20000)
        expect(failed.locator("td.response-status")).to_have_text("500")
        expect(failed.locator("td[data-label='Next attempt'] time")).to_be_visible()

        receiver.status = 200
        failed.locator("button:has-text('Redeliver')").click()
        succeeded = page.locator("table.deliveries tr[data-status=succeeded]")
        expect(succeeded).to_have_count(1, timeout=20000)
        expect(succeeded.locator("td.response-status")).to_have_text("200")
        expect(failed.locator("td.response-status")).to_have_text("500")  # the log keeps every attempt
        screenshot(page, shots / "webhooks.png", full_page=True)

        page.click("button:has-text('Send test')")
        expect(page.locator("table.deliveries tr[data-status=succeeded]")).to_have_count(2, timeout=20000)
        assert json.loads(receiver.received[-1])["type"] == "webhook.test"

        page.click("button:has-text('Rotate secret')")
        expect(page.locator("#dialog input.secret")).to_have_value(re.compile(r"^whsec_"))
        page.click("#dialog button:has-text('Close')")

        page.fill("#hook-description", "Ops receiver, fixed")
        page.click("form.hook-form button:has-text('Save')")
        expect(page.locator(".toast", has_text="Webhook saved.")).to_be_visible()
        page.click("button:has-text('Pause')")
        expect(page.locator(".page-head .badge")).to_have_text("paused")
        hook = api.get("/webhooks").get_json()["data"][0]
        assert (hook["active"], hook["description"]) == (False, "Ops receiver, fixed")
    finally:
        receiver.http.close()


def test_a_webhook_disabled_by_a_410_is_marked_with_the_reason(open_console, api, server, worker):
    receiver = Receiver()
    receiver.status = 410
    try:
        hook = requests.post(f"{server}/api/v1/webhooks", timeout=10,
                             headers={"Authorization": f"Bearer {api.key}"},
                             json={"url": receiver.http.url, "events": ["task.created"]})
        assert hook.status_code == 201, hook.json()
        api.create("tasks", title="Gone")
        page = open_console(api.key)
        page.click("#nav a[href='#/webhooks']")
        row = page.locator("table tr", has_text=receiver.http.url)
        expect(row.locator(".badge")).to_have_text("disabled: Endpoint answered 410 Gone.", timeout=20000)
    finally:
        receiver.http.close()


# --- jobs ------------------------------------------------------------------------------------------


def test_export_of_the_current_filter_shows_progress_and_downloads(open_console, api, worker, shots):
    items = [{"title": f"Row {index:02d}", "priority": "high" if index % 3 == 0 else "low"}
             for index in range(30)]
    assert api.post("/import/tasks", json={"items": items}).status_code == 201
    lines = b'{"title": "From a file", "priority": "low"}\n{"title": ""}\n'
    imported = api.post("/import/tasks/file", data={"file": (io.BytesIO(lines), "tasks.jsonl")},
                        content_type="multipart/form-data")
    assert imported.status_code == 202, imported.get_json()
    page = open_console(api.key)
    page.click("#nav a[href='#/records/tasks']")
    page.click("button:has-text('+ Filter')")
    page.select_option(".filter-field", "priority")
    page.fill(".filter-value", "high")
    page.click("button:has-text('Apply')")
    expect(page.locator("table.records tbody tr")).to_have_count(10)
    page.click("button:has-text('Export CSV')")
    expect(page).to_have_url(re.compile(r"#/jobs/job_"))
    expect(page.locator("article.job", has_text="Import of task records")).to_contain_text(
        "1 created, 1 failed", timeout=30000)
    job = page.locator("article.job.focus")
    expect(job).to_have_attribute("data-status", "succeeded", timeout=30000)
    expect(job.locator(".progress")).to_have_text("10 / 10 (100%)")
    expect(job.locator(".job-summary")).to_contain_text("10 rows, csv")
    screenshot(page, shots / "jobs.png")

    with page.expect_download() as download:
        job.locator("button:has-text('Download')").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert sorted(row["title"] for row in rows) == [f"Row {index:02d}" for index in range(0, 30, 3)]
    assert {row["priority"] for row in rows} == {"high"}


def test_an_import_from_the_jobs_page_shows_its_failures(open_console, api, worker):
    page = open_console(api.key)
    page.click("#nav a[href='#/jobs']")
    page.select_option("form.import select", "tasks")
    lines = [{"title": "Imported fine"}, {"title": "Bad status", "status": "someday"}]
    page.set_input_files("form.import input[type=file]", files=[{
        "name": "tasks.jsonl", "mimeType": "application/x-ndjson",
        "buffer": "\n".join(json.dumps(line) for line in lines).encode()}])
    page.click("button:has-text('Start import')")
    job = page.locator("article.job", has_text="Import of task records")
    expect(job).to_have_attribute("data-status", "succeeded", timeout=30000)
    expect(job.locator(".job-summary")).to_have_text("1 created, 1 failed")
    job.locator("details.failures summary").click()
    expect(job.locator("details.failures")).to_contain_text(
        "status: Must be one of: todo, in_progress, completed.")
    assert api.get("/tasks").get_json()["meta"]["total"] == 1


# --- keys ------------------------------------------------------------------------------------------


def test_create_a_key_then_revoke_it(open_console, api, server, shots):
    page = open_console(api.key)
    page.click("#nav a[href='#/keys']")
    page.fill(".key-form input[name=name]", "reporting")
    page.check(".key-form input[value=write]")
    page.fill(".key-form input[name=rateLimit]", "100/minute")
    page.click("button:has-text('Create key')")
    secret = page.locator("#dialog input.secret")
    expect(secret).to_have_value(re.compile(r"^sk_"))
    key = created_key(page)
    page.click("#dialog button:has-text('Copy')")
    expect(page.locator("#dialog button:has-text('Copied')")).to_be_visible()
    page.click("#dialog button:has-text('Close')")
    auth = {"Authorization": f"Bearer {key}"}
    assert requests.get(f"{server}/api/v1/tasks", headers=auth, timeout=10).status_code == 200
    row = page.locator("table.keys tr", has_text="reporting")
    expect(row.locator("td[data-label=Scopes] .badge")).to_have_text(["read", "write"])
    expect(row.locator("td[data-label='Rate limit']")).to_have_text("100/minute")
    screenshot(page, shots / "keys.png")

    row.locator("button:has-text('Revoke')").click()
    page.click("#dialog button:has-text('Revoke')")
    expect(row.locator("td[data-label=State]")).to_contain_text("revoked")
    answer = requests.get(f"{server}/api/v1/tasks", headers=auth, timeout=10)
    assert answer.status_code == 401 and answer.json()["code"] == "UNAUTHORIZED"


# --- events ----------------------------------------------------------------------------------------


def test_an_event_arrives_live_and_type_filters_apply(open_console, api, shots):
    api.create("projects", name="Before the page")
    page = open_console(api.key)
    page.click("#nav a[href='#/events']")
    expect(page.locator(".live-state")).to_have_text("Live")
    expect(page.locator("li.event[data-type='project.created']")).to_have_count(1)

    task = api.create("tasks", title="Seen live")
    arrived = page.locator("li.event[data-type='task.created']", has_text=task["id"])
    expect(arrived).to_contain_text("Seen live")
    api.patch(f"/tasks/{task['id']}", json={"status": "completed"})
    updated = page.locator("li.event[data-type='task.updated']")
    expect(updated).to_contain_text("changed: status")
    updated.locator("summary").click()
    expect(updated.locator("pre")).to_contain_text('"previousAttributes"')
    screenshot(page, shots / "events.png")

    page.click(".type-filter summary")
    page.check(".type-filter input[value='project.created']")
    page.click(".type-filter button:has-text('Apply')")
    expect(page.locator(".live-state")).to_have_text("Live")
    expect(page.locator("li.event")).to_have_count(1)
    api.create("tasks", title="Filtered out")
    api.create("projects", name="Let through")
    expect(page.locator("li.event[data-type='project.created']", has_text="Let through")).to_have_count(1)
    expect(page.locator("li.event[data-type='task.created']")).to_have_count(0)


@pytest.mark.parametrize("seen_before", [True, False])
def test_the_tail_resumes_after_a_network_drop_without_losing_events(open_console, api, gunicorn,
                                                                     seen_before):
    """The stream drops (gunicorn restarts its workers, which ends open streams) while the
    browser is offline; events committed in the gap arrive once it is back: resumed from the
    last event id when the page has seen one, else from a fresh look at the latest events."""
    page = open_console(api.key)
    page.click("#nav a[href='#/events']")
    expect(page.locator(".live-state")).to_have_text("Live")
    if seen_before:
        api.create("projects", name="Seen before the drop")
        expect(page.locator("li.event")).to_have_count(1)
    page.context.set_offline(True)
    gunicorn[1].send_signal(signal.SIGHUP)
    expect(page.locator(".live-state")).to_contain_text("reconnecting", timeout=20000)
    missed = api.create("tasks", title="Committed while offline")
    page.context.set_offline(False)
    expect(page.locator("li.event", has_text=missed["id"])).to_have_count(1, timeout=20000)
    expect(page.locator(".live-state")).to_have_text("Live")
    expect(page.locator("li.event")).to_have_count(2 if seen_before else 1)


def test_a_reset_from_the_stream_reloads_the_latest_events(open_console, api):
    """The page's first look at the log names an event the server's log does not hold (as
    when it has left the retained log): the stream answers {"type":"reset"}, and the page
    says so and reloads the latest events."""
    api.create("projects", name="In the log")
    page = open_console(api.key)
    gone = {"success": True, "meta": {}, "data": [{
        "id": "evt_00000000000000000000000000", "type": "project.created",
        "createdAt": "2026-01-01T00:00:00Z", "data": {"id": "prj_gone", "name": "Not in the log"}}]}
    answered = []

    def first_answer_names_a_lost_event(route):
        if answered:
            route.continue_()
        else:
            answered.append(True)
            route.fulfill(json=gone)

    page.route(re.compile(r"/api/v1/events\?"), first_answer_names_a_lost_event)
    page.click("#nav a[href='#/events']")
    expect(page.locator("main .notice")).to_contain_text("could not replay every missed event")
    expect(page.locator("li.event", has_text="In the log")).to_have_count(1)
    expect(page.locator("li.event", has_text="Not in the log")).to_have_count(0)
    expect(page.locator(".live-state")).to_have_text("Live")
