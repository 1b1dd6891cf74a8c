"""Swagger UI at `/api/v1/docs`, in headless Chromium: "Try it out" works as the page offers it.

A reader who opens a list route, clicks "Try it out" and then "Execute" without touching
the form gets a 200: the page pre-fills nothing the server refuses (a filter's field starts
as `{}`, no filter). What is typed into a filter's field is sent as `field[op]=value`. The
page is the real one (gunicorn, local assets), given the account's key through swagger-ui's
own `preauthorizeApiKey`, and driven by clicks on its buttons (`tests/browser.py`).
"""

import json

import pytest

from tests.procs import wait_for

LIST_ROUTES = ["/api/v1/users", "/api/v1/projects", "/api/v1/tasks", "/api/v1/comments",
               "/api/v1/events", "/api/v1/jobs", "/api/v1/files", "/api/v1/webhooks",
               "/api/v1/api-keys"]

# The `GET` block of a path, found by the path swagger-ui shows in its summary.
BLOCK = """[...document.querySelectorAll('.opblock-get')].find(
    b => b.querySelector('.opblock-summary-path')?.dataset.path === {path})"""


@pytest.fixture
def docs_page(browser, live_server, api):
    """The docs page, loaded, with the account's admin key authorized."""
    browser.call("Page.navigate", url=f"{live_server}/api/v1/docs")
    wait_for(lambda: browser.evaluate("document.querySelectorAll('.opblock').length > 0"),
             timeout=20, message="swagger-ui to render the operations")
    browser.evaluate(f"window.ui.preauthorizeApiKey('bearerAuth', {json.dumps(api.key)})")
    assert browser.evaluate("window.ui.authSelectors.authorized().has('bearerAuth')")
    return browser


def _click(page, block: str, selector: str, what: str) -> None:
    clicked = f"(() => {{ const b = {block}.querySelector({json.dumps(selector)});" \
              " if (!b) return false; b.click(); return true; })()"
    wait_for(lambda: page.evaluate(clicked), timeout=10, message=what)


def _type(page, block: str, parameter: str, text: str) -> None:
    """Type `text` into a query parameter's field (the way React sees typing: an input event)."""
    field = f"{block}.querySelector('tr[data-param-name={json.dumps(parameter)}] textarea')"
    page.evaluate(f"""(() => {{
        const field = {field};
        const set = Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value').set;
        set.call(field, {json.dumps(text)});
        field.dispatchEvent(new Event('input', {{bubbles: true}}));
    }})()""")


def try_it_out(page, path: str, typed: dict | None = None) -> tuple[str, str]:
    """Expand `GET path`, click "Try it out", type `typed` (parameter → text), click "Execute";
    the status shown and the URL sent."""
    block = BLOCK.format(path=json.dumps(path))
    assert page.evaluate(f"!!{block}"), f"no GET {path} on the page"
    _click(page, block, ".opblock-summary-control", f"the summary of GET {path}")
    _click(page, block, ".try-out__btn", f'"Try it out" of GET {path}')
    for parameter, text in (typed or {}).items():
        _type(page, block, parameter, text)
    _click(page, block, ".execute", f'"Execute" of GET {path}')
    status = f"{block}.querySelector('.live-responses-table tr.response .response-col_status')?.textContent"
    shown = wait_for(lambda: page.evaluate(status), timeout=15,
                     message=f"the response of GET {path}")
    url = page.evaluate(f"{block}.querySelector('.request-url pre')?.textContent ?? ''")
    return shown.split()[0], url


@pytest.mark.parametrize("path", LIST_ROUTES)
def test_try_it_out_then_execute_on_an_untouched_list_route_answers_200(docs_page, path):
    status, url = try_it_out(docs_page, path)
    assert status == "200", f"GET {path} from the untouched form: {status} for {url}"


def test_a_filter_typed_into_its_field_is_sent_as_field_op(docs_page, api):
    api.create("tasks", title="Swagger todo")
    api.create("tasks", title="Swagger done", status="completed")
    status, url = try_it_out(docs_page, "/api/v1/tasks", {"status": '{"in": "todo"}'})
    assert status == "200", url
    assert "status%5Bin%5D=todo" in url, url
    body = json.loads(docs_page.evaluate(
        f"{BLOCK.format(path=json.dumps('/api/v1/tasks'))}"
        ".querySelector('.live-responses-table .response-col_description pre').textContent"))
    assert [t["title"] for t in body["data"]] == ["Swagger todo"]
