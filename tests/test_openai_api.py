"""The OpenAI-compatible API (rag/openai_api.py) with clients no one here wrote: the official
``openai`` package and ``curl``, against the real app (``python app.py``) on a free port.

One app process serves the module: a folder with a slide deck, a spreadsheet (made by
tests/docfixtures.py) and one corpus document is indexed with ``python -m rag index``, then
app.py starts in extractive mode (no LLM needed) and serves the UI and /v1 on one port.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from conftest import CORPUS, ROOT, app_env, start_app, stop_app
from docfixtures import CASES, write_all

from rag.openai_api import ApiError, check_bearer, parse_request

AVAILABLE = ["auto", "extractive"]


@pytest.fixture(scope="module")
def app(tmp_path_factory, model_dir) -> Iterator[SimpleNamespace]:
    root = tmp_path_factory.mktemp("api")
    docs = root / "docs"
    write_all(docs, ("pptx", "xlsx"))
    shutil.copy(CORPUS / "001_ef270eff479935e8.txt", docs)
    env = app_env(root / "data", model_dir)
    done = subprocess.run([sys.executable, "-m", "rag", "index", str(docs)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    log_path = root / "app.log"
    proc, url = start_app(env, log_path, ready="/v1/models")
    yield SimpleNamespace(url=url, log=log_path)
    stop_app(proc)


@pytest.fixture(scope="module")
def client(app):
    from openai import OpenAI

    return OpenAI(base_url=f"{app.url}/v1", api_key="unused-on-loopback", timeout=120, max_retries=0)


def _check_citations(citations: list[dict], content: str) -> dict:
    deck = next(c for c in citations if c["doc_id"] == "helix_deck")
    assert "40 million" in deck["quote"] and deck["location"] == "slide 2" and deck["page"] == 2
    assert deck["source"].endswith("helix_deck.pptx") and deck["char_end"] - deck["char_start"] == len(deck["quote"])
    assert f"[{deck['n']}]" in content and "Sources:" in content and "slide 2" in content
    return deck


@pytest.mark.slow
def test_models_are_the_answer_modes(client):
    ids = [m.id for m in client.models.list().data]
    assert "rag-extractive" in ids and "rag-auto" in ids
    assert client.models.retrieve("rag-extractive").owned_by == "rag-cite"


@pytest.mark.slow
def test_openai_client_non_streaming_answer_carries_citations(client):
    got = client.chat.completions.create(model="rag-extractive", messages=[
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": CASES["pptx"].question}])
    content = got.choices[0].message.content
    assert got.object == "chat.completion" and got.choices[0].finish_reason == "stop"
    extra = got.model_extra
    _check_citations(extra["citations"], content)
    assert extra["abstained"] is False and extra["verified"] is False and extra["mode"] == "extractive"
    assert extra["fallback"] == "" and extra["conflicts"] == []
    assert got.usage.completion_tokens > 0 and got.usage.total_tokens > got.usage.completion_tokens


@pytest.mark.slow
def test_openai_client_streaming_gives_the_same_answer_then_citations(client):
    question = [{"role": "user", "content": CASES["xlsx"].question}]
    plain = client.chat.completions.create(model="rag-extractive", messages=question)
    stream = client.chat.completions.create(model="rag-extractive", messages=question, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    sheet = next(c for c in final.model_extra["citations"] if c["doc_id"] == "ventas_2024")
    assert "350" in sheet["quote"] and sheet["location"] == "sheet Ventas, row 3" and sheet["page"] is None
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


@pytest.mark.slow
def test_history_abstention_and_errors_through_the_client(client):
    import openai

    follow = client.chat.completions.create(model="rag-extractive", messages=[
        {"role": "user", "content": "Who advises AIP?"},
        {"role": "assistant", "content": "Nvidia advises AIP [1].\n\nSources:\n[1] ..."},
        {"role": "user", "content": "What is the recipe for a chocolate cake with cherries?"}])
    assert follow.model_extra["abstained"] is True and follow.model_extra["citations"] == []
    assert follow.model_extra["related"] and "not citations" in follow.choices[0].message.content

    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert err.value.code == "model_not_found" and "rag-extractive" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="rag-extractive", messages=[{"role": "user", "content": "?!"}])
    assert "no words" in err.value.message and err.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError):  # also when streaming: a 400 before any event
        client.chat.completions.create(model="rag-extractive", stream=True,
                                       messages=[{"role": "user", "content": "   "}])


def _curl(*args: str) -> subprocess.CompletedProcess:
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is not installed (apt-get install curl)")
    return subprocess.run([curl, "-sS", "--max-time", "120", *args], capture_output=True, text=True, timeout=150)


@pytest.mark.slow
def test_curl_non_streaming_streaming_and_error_shape(app):
    body = json.dumps({"model": "rag-extractive", "messages": [{"role": "user", "content": CASES["pptx"].question}]})
    got = _curl(f"{app.url}/v1/chat/completions", "-H", "Content-Type: application/json", "-d", body)
    answer = json.loads(got.stdout)
    _check_citations(answer["citations"], answer["choices"][0]["message"]["content"])

    streamed = _curl("-N", f"{app.url}/v1/chat/completions", "-H", "Content-Type: application/json",
                     "-d", body.replace('"messages"', '"stream": true, "messages"'))
    events = [line[len("data: "):] for line in streamed.stdout.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == \
        answer["choices"][0]["message"]["content"]
    _check_citations(chunks[-1]["citations"], answer["choices"][0]["message"]["content"])

    bad = _curl("-w", "\n%{http_code}", f"{app.url}/v1/chat/completions", "-H", "Content-Type: application/json",
                "-d", "{not json")
    text, status = bad.stdout.rsplit("\n", 1)
    assert status == "400" and json.loads(text)["error"]["message"] == "the request body is not valid JSON"
    assert set(json.loads(text)["error"]) == {"message", "type", "param", "code"}


def test_bearer_rules():
    check_bearer(None, set(), required=False)  # loopback, no keys: open
    for header, keys, code in [(None, set(), "no_api_key_configured"), (None, {"k1"}, "invalid_api_key"),
                               ("Bearer nope", {"k1"}, "invalid_api_key"), ("Basic k1", {"k1"}, "invalid_api_key")]:
        with pytest.raises(ApiError) as err:
            check_bearer(header, keys, required=True)
        assert err.value.status == 401 and err.value.code == code
    check_bearer("Bearer k1", {"k1", "k2"}, required=True)
    with pytest.raises(ApiError):  # keys configured on loopback are checked too
        check_bearer(None, {"k1"}, required=False)


def test_bearer_auth_on_the_real_routes(make_settings, monkeypatch):
    """The router as app.py mounts it beyond loopback, in-process (FastAPI's TestClient), over a
    real Assistant with an empty index: no key, a wrong key, the right key."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from rag import Assistant
    from rag.openai_api import openai_router

    monkeypatch.setenv("RAG_API_KEYS", "alpha-key, beta-key")
    qa = Assistant(make_settings(auth="ana:s3cret"))
    web = FastAPI()
    web.include_router(openai_router(qa, require_auth=True))
    http = TestClient(web)
    assert http.get("/v1/models").status_code == 401
    wrong = http.get("/v1/models", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert wrong.headers["www-authenticate"] == "Bearer"
    for key in ("beta-key", "ana:s3cret"):  # an API key, or the UI's credentials
        assert http.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    wrong_verb = http.get("/v1/chat/completions")
    assert wrong_verb.status_code == 404 and "POST /v1/chat/completions" in wrong_verb.json()["error"]["message"]


def test_parse_request_history_and_validation():
    req = parse_request({"model": "rag-extractive", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "Who advises AIP?"},
        {"role": "assistant", "content": "Nvidia [1].\n\nSources:\n[1] doc: “Nvidia advises AIP.”"},
        {"role": "user", "content": [{"type": "text", "text": "And who founded it?"}]}]}, AVAILABLE)
    assert req["question"] == "And who founded it?" and req["history"] == [("Who advises AIP?", "Nvidia [1].")]
    assert req["mode"] == "extractive" and req["stream"] is False
    for body, status, param in [
        ([], 400, None), ({"messages": []}, 400, "model"), ({"model": "x", "messages": []}, 404, "model"),
        ({"model": "rag-local", "messages": [{"role": "user", "content": "q"}]}, 400, "model"),
        ({"model": "rag-auto", "messages": []}, 400, "messages"),
        ({"model": "rag-auto", "messages": [{"role": "assistant", "content": "a"}]}, 400, "messages"),
        ({"model": "rag-auto", "messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
        ({"model": "rag-auto", "stream": "yes", "messages": [{"role": "user", "content": "q"}]}, 400, "stream"),
        ({"model": "rag-auto", "top_k": "3", "messages": [{"role": "user", "content": "q"}]}, 400, "top_k"),
    ]:
        with pytest.raises(ApiError) as err:
            parse_request(body, AVAILABLE)
        assert (err.value.status, err.value.param) == (status, param), body


def test_stream_sends_the_quote_stage_first_outside_the_content():
    """LLM modes: the cited quote goes out at once as an extra field (no content: streamed text cannot
    be taken back), then the final answer is the content; an extractive answer has no quote chunk."""
    from rag.openai_api import sse_chunks
    from rag.types import Answer, Citation, Event

    cite = Citation(n=1, doc_id="d", source="d.txt", chunk_id="c", language="es", quote="Ana dirige la AIP.",
                    char_start=0, char_end=18, score=0.9)
    quote = Answer(question="Who runs AIP?", text="“Ana dirige la AIP.” [1]", language="en", mode="extractive",
                   citations=[cite], stage="quote")
    final = Answer(question="Who runs AIP?", text="Ana runs AIP [1].", language="en", mode="local", verified=True,
                   citations=[cite])
    req = {"model": "rag-local", "question": "Who runs AIP?", "history": [], "include_usage": False}

    def events(*answers):
        return lambda: iter([Event("token", "Ana"), *(Event("answer", a) for a in answers)])

    def parse(body):
        return [json.loads(x[6:]) for x in body if x.startswith("data: {")]

    got = parse(list(sse_chunks(req, events(quote, final), "id1", 0)))
    staged = [i for i, c in enumerate(got) if c.get("rag_stage") == "quote"]
    content = [i for i, c in enumerate(got) if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(staged) == 1 and len(content) == 1 and staged[0] < content[0]
    assert got[staged[0]]["choices"][0]["delta"] == {}
    assert got[staged[0]]["rag_quote"]["content"].startswith(quote.text)
    assert got[staged[0]]["rag_quote"]["citations"][0]["quote"] == "Ana dirige la AIP."
    assert got[content[0]]["choices"][0]["delta"]["content"].startswith("Ana runs AIP [1].")

    plain = parse(list(sse_chunks(req, events(final), "id2", 0)))
    assert not any("rag_stage" in c for c in plain)
