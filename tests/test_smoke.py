"""A first pass over the basics, through the Flask test client."""


def test_create_and_get_task(api):
    task = api.create("tasks", title="Write tests")
    response = api.get(f"/tasks/{task['id']}")
    assert response.status_code == 200
    assert response.get_json()["data"]["title"] == "Write tests"
