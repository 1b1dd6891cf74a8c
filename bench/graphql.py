"""GraphQL vs REST for the same page: 100 tasks with their assignee and project (and comments).

Against a running Quiver whose 100 newest tasks have assignees and projects (as
`bench/__main__.py` seeds them), this adds two comments to each of those tasks,
then measures under the same load (bench/load.py, same threads and duration):
- REST `GET /api/v1/tasks?limit=100&expand=assignee,project`;
- the same data through GraphQL (every task field, `assignee`, `project`);
- the same GraphQL query with each task's `comments` as well.
"""

import http.client
import json

from bench import load

FIELDS = "id createdAt updatedAt title description status priority projectId assigneeId dueAt completedAt"
PERSON = "id createdAt updatedAt name email"
PROJECT = "id createdAt updatedAt name description"
WITH_RELATIONS = (f"{{ tasks(limit: 100) {{ edges {{ node {{ {FIELDS} assignee {{ {PERSON} }} "
                  f"project {{ {PROJECT} }} }} }} }} }}")
WITH_COMMENTS = WITH_RELATIONS.replace(
    "project {", "comments(limit: 5) { id createdAt body authorId } project {")
REST_PATH = "/api/v1/tasks?limit=100&expand=assignee,project"


def _request(port: int, method: str, path: str, auth: dict, body=None) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers={**auth, "Content-Type": "application/json"})
    response = conn.getresponse()
    result = json.loads(response.read())
    conn.close()
    assert response.status < 300, result
    return result


def _seed_comments(port: int, auth: dict) -> None:
    tasks = _request(port, "GET", "/api/v1/tasks?limit=100&fields=id", auth)["data"]
    _request(port, "POST", "/api/v1/import/comments", auth, {"items": [
        {"taskId": task["id"], "body": f"comment {n}"} for task in tasks for n in range(2)]})


def _check(port: int, auth: dict, query: str) -> None:
    """One run of `query` answers 100 tasks and no errors (load.run only sees HTTP statuses)."""
    result = _request(port, "POST", "/api/v1/graphql", auth, {"query": query})
    assert "errors" not in result, result["errors"]
    assert len(result["data"]["tasks"]["edges"]) == 100


def run(line, backend: str, port: int, auth: dict, threads: int = 4, duration: float = 4.0) -> None:
    """Measure and print one line: req/s and p50 of REST+expand, GraphQL, GraphQL+comments."""
    _seed_comments(port, auth)
    for query in (WITH_RELATIONS, WITH_COMMENTS):
        _check(port, auth, query)
    rest = load.run(port, "GET", REST_PATH, headers=auth, threads=threads, duration=duration)
    graphql = load.run(port, "POST", "/api/v1/graphql", body={"query": WITH_RELATIONS}, headers=auth,
                       threads=threads, duration=duration)
    comments = load.run(port, "POST", "/api/v1/graphql", body={"query": WITH_COMMENTS}, headers=auth,
                        threads=threads, duration=duration)
    assert rest.errors == graphql.errors == comments.errors == 0
    line(backend, f"100 tasks + assignee + project: REST expand {rest.rate:,.0f} req/s, "
                  f"p50 {rest.p50:.1f} ms; GraphQL {graphql.rate:,.0f} req/s, p50 {graphql.p50:.1f} ms "
                  f"(ratio {graphql.rate / rest.rate:.2f}); GraphQL + 2 comments each "
                  f"{comments.rate:,.0f} req/s, p50 {comments.p50:.1f} ms")
