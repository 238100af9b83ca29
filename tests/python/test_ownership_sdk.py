"""Cross-project isolation of upstream ids, with the official OpenAI Python
SDK against the `api_gateway` fixture (conftest.py).

Every Keyward project shares the operator's upstream account, so the
fake upstream would hand any id to anyone. Keyward records which project
created each response, file and batch, and answers 404 in OpenAI's error
shape (the SDK's NotFoundError) to any other project, without asking the
upstream: on retrieve, delete, cancel, input_items, file content, and on ids
inside bodies (previous_response_id, a batch's input_file_id). Lists are
answered from Keyward's own table, so each project sees only its own.
"""

import json

import openai
import pytest


def lines(n):
    return "".join(
        json.dumps({"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": "resp-test", "messages": [{"role": "user", "content": f"own {i}"}]}}) + "\n"
        for i in range(n)
    ).encode()


@pytest.fixture(scope="module")
def projects(api_gateway):
    """Two fresh projects, A and B, each with a full-permission key."""
    out = {}
    for name in ("A", "B"):
        p = api_gateway.create_project(f"isolation {name}")
        k = api_gateway.create_key(project_id=p["id"], name=f"key {name}")
        out[name] = (p, k, api_gateway.client(k["value"]))
    return out


@pytest.fixture(scope="module")
def a_objects(projects):
    """What project A made: a stored response, a background response, a
    file of purpose batch, a user_data file, a batch (and its completion)."""
    _, _, a = projects["A"]
    resp = a.responses.create(model="resp-test", input="secret of A")
    background = a.responses.create(model="resp-test", input="A later", background=True)
    batch_file = a.files.create(file=("a.jsonl", lines(2)), purpose="batch")
    doc = a.files.create(file=("a.txt", b"A's private bytes"), purpose="user_data")
    batch = a.batches.create(input_file_id=batch_file.id, endpoint="/v1/chat/completions", completion_window="24h")
    pending = a.batches.create(input_file_id=batch_file.id, endpoint="/v1/chat/completions", completion_window="24h")
    return {"resp": resp, "background": background, "batch_file": batch_file, "doc": doc,
            "batch": batch, "pending": pending}


def refused(call, upstream):
    """`call` raises NotFoundError (404, OpenAI's shape) and reaches no upstream."""
    mark = upstream.mark()
    with pytest.raises(openai.NotFoundError) as e:
        call()
    assert e.value.status_code == 404
    assert isinstance(e.value.body, dict) and e.value.message, e.value.body
    assert upstream.since(mark) == [], "a foreign id was looked up upstream"
    return e.value


def test_responses_of_another_project_are_not_found(projects, a_objects, upstream):
    _, _, b = projects["B"]
    rid = a_objects["resp"].id
    refused(lambda: b.responses.retrieve(rid), upstream)
    refused(lambda: b.responses.delete(rid), upstream)
    refused(lambda: list(b.responses.input_items.list(rid)), upstream)
    refused(lambda: b.responses.cancel(a_objects["background"].id), upstream)
    refused(lambda: b.responses.create(model="resp-test", input="steal", previous_response_id=rid), upstream)
    with pytest.raises(openai.NotFoundError):
        with b.responses.stream(model="resp-test", input="steal", previous_response_id=rid) as s:
            s.get_final_response()
    # An id nobody issued gets the very same answer.
    unknown = refused(lambda: b.responses.retrieve("resp_fake999999"), upstream)
    foreign = refused(lambda: b.responses.retrieve(rid), upstream)
    assert unknown.status_code == foreign.status_code and unknown.code == foreign.code

    # A still has all of it: B's attempts deleted and cancelled nothing.
    _, _, a = projects["A"]
    assert a.responses.retrieve(rid).output_text == "echo: secret of A"
    assert a.responses.cancel(a_objects["background"].id).status == "cancelled"
    follow = a.responses.create(model="resp-test", input="more", previous_response_id=rid)
    assert follow.previous_response_id == rid


def test_files_of_another_project_are_not_found_nor_listed(projects, a_objects, upstream):
    _, _, a = projects["A"]
    _, _, b = projects["B"]
    fid = a_objects["doc"].id
    refused(lambda: b.files.retrieve(fid), upstream)
    refused(lambda: b.files.content(fid), upstream)
    refused(lambda: b.files.delete(fid), upstream)

    own = b.files.create(file=("b.txt", b"B's bytes"), purpose="user_data")
    assert [f.id for f in b.files.list()] == [own.id]
    assert [f.id for f in b.files.list(purpose="user_data")] == [own.id]
    assert [f.id for f in b.files.list(purpose="batch")] == []
    a_ids = [f.id for f in a.files.list()]
    assert own.id not in a_ids and fid in a_ids and a_objects["batch_file"].id in a_ids
    assert a.files.content(fid).read() == b"A's private bytes"


def test_batches_of_another_project_are_not_found_nor_listed(projects, a_objects, upstream):
    _, _, a = projects["A"]
    _, _, b = projects["B"]
    bid = a_objects["batch"].id
    refused(lambda: b.batches.retrieve(bid), upstream)
    refused(lambda: b.batches.cancel(a_objects["pending"].id), upstream)
    refused(lambda: b.batches.create(input_file_id=a_objects["batch_file"].id, endpoint="/v1/chat/completions",
                                     completion_window="24h"), upstream)

    own_file = b.files.create(file=("b.jsonl", lines(1)), purpose="batch")
    own = b.batches.create(input_file_id=own_file.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert [x.id for x in b.batches.list()] == [own.id]
    a_ids = [x.id for x in a.batches.list()]
    assert own.id not in a_ids and set(a_ids) >= {bid, a_objects["pending"].id}

    # A's batch completes; its output file is A's, and B cannot read it.
    for _ in range(5):
        done = a.batches.retrieve(bid)
        if done.status == "completed":
            break
    assert done.status == "completed" and done.output_file_id
    assert len(a.files.content(done.output_file_id).read().splitlines()) == 2
    refused(lambda: b.files.content(done.output_file_id), upstream)
    assert done.output_file_id not in [f.id for f in b.files.list()]
    # A's pending batch is still A's to cancel.
    assert a.batches.cancel(a_objects["pending"].id).status == "cancelling"


def test_ledger_rows_belong_to_the_project_that_made_the_call(api_gateway, projects, a_objects):
    (pa, ka, _), (pb, kb, b) = projects["A"], projects["B"]
    raw = b.responses.with_raw_response.create(model="resp-test", input="B pays")
    rid = raw.headers["x-request-id"]
    row = api_gateway.ledger_rows([rid])[rid]
    assert (row["project_id"], row["key_id"]) == (pb["id"], kb["id"])
    a_rows = [r for r in api_gateway.ledger() if r["project_id"] == pa["id"]]
    assert a_rows and all(r["key_id"] == ka["id"] for r in a_rows)
