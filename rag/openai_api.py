"""An OpenAI-compatible chat API over ``Assistant``: ``GET /v1/models``, ``POST /v1/chat/completions``.

    >>> app.include_router(openai_router(qa, require_auth=False))       # app.py mounts it on the UI's port
    $ curl -s 127.0.0.1:7860/v1/chat/completions -H 'content-type: application/json' \\
        -d '{"model": "rag-extractive", "messages": [{"role": "user", "content": "Who advises AIP?"}]}'

A thin adapter: the model name picks the answer mode (``rag-auto``, ``rag-extractive``,
``rag-local``, ``rag-openai``), the last user message is the question and the earlier turns its
history. A response is a standard ``chat.completion`` (or ``chat.completion.chunk`` events, then
``data: [DONE]``) whose text carries numbered marks and a short "Sources" list, plus top-level
fields clients may read: ``citations`` (n, doc_id, title, source, page, location, quote,
char_start, char_end, language, score), ``abstained``, ``related``, ``conflicts``, ``fallback``,
``verified``, ``mode``. Streaming sends only verified text: an LLM draft that fails verification
is never shown (a client cannot take streamed text back), so the content arrives once it is
checked, with SSE comments as keep-alives meanwhile. In the LLM modes the cited quote comes first,
at once, in a chunk with an empty delta and two extra fields, ``rag_stage: "quote"`` and
``rag_quote`` (its content and the fields above), for clients that show it while the model works.
Errors use OpenAI's shape ``{"error": {"message", "type", "param", "code"}}`` with a fitting HTTP
status.

Auth: when the app listens beyond loopback (or keys are configured), every request needs
``Authorization: Bearer <key>``; keys come from ``api_keys(settings)`` (one place to point at
shared credentials).
"""

from __future__ import annotations

import hmac
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from rag.engine import clean_question
from rag.errors import QuestionError, RagError
from rag.types import Answer, Citation, Event

MODELS = {"rag-auto": "auto", "rag-extractive": "extractive", "rag-local": "local", "rag-openai": "openai"}
SOURCES_HEADER = "\n\nSources:\n"
BUSY_SECONDS = 300.0  # how long a request waits for the one answering slot before a 503


class ApiError(Exception):
    """An error for the client, in OpenAI's shape."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def api_keys(settings) -> set[str]:
    """Bearer tokens accepted: ``$RAG_API_KEYS`` (comma-separated), the lines of
    ``settings.api_keys_file``, and the UI's ``user:password`` when auth is set."""
    keys = {k.strip() for k in os.environ.get("RAG_API_KEYS", "").split(",") if k.strip()}
    path = str(getattr(settings, "api_keys_file", "") or "")
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                keys |= {line.strip() for line in fh if line.strip() and not line.startswith("#")}
        except OSError as exc:
            raise RagError(f"api_keys_file {path} cannot be read ({exc.strerror}); fix the path or unset it") from exc
    if getattr(settings, "auth", ""):
        keys.add(settings.auth)
    return keys


def check_bearer(header: str | None, keys: set[str], required: bool) -> None:
    """Raise a 401 ApiError unless ``header`` is ``Bearer <one of keys>`` (or auth is not required)."""
    if not required and not keys:
        return
    if not keys:
        raise ApiError(401, "this API listens beyond 127.0.0.1 and no API key is configured: set RAG_API_KEYS "
                            "(or api_keys_file) on the server, then send 'Authorization: Bearer <key>'",
                       "authentication_error", code="no_api_key_configured")
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'", "authentication_error",
                       code="invalid_api_key")
    if not any(hmac.compare_digest(token.strip().encode(), k.encode()) for k in keys):
        raise ApiError(401, "incorrect API key", "authentication_error", code="invalid_api_key")


# ---------------------------------------------------------------------- request -> question
def parse_request(body: Any, available: list[str]) -> dict[str, Any]:
    """Validate a chat.completions body; return mode, question, history, stream and filters."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, f"'model' is required: one of {sorted(MODELS)}", param="model")
    if model not in MODELS:
        raise ApiError(404, f"the model '{model}' does not exist; use one of {sorted(MODELS)} (GET /v1/models)",
                       param="model", code="model_not_found")
    if MODELS[model] not in available:
        usable = [m for m, mode in MODELS.items() if mode in available]
        raise ApiError(400, f"the model '{model}' is not available on this server; available: {usable}",
                       param="model", code="model_not_available")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list of {role, content}", param="messages")
    turns: list[tuple[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant", "tool"):
            raise ApiError(400, f"messages[{i}] must be an object with role system|user|assistant",
                           param=f"messages[{i}]")
        turns.append((m["role"], _content(m.get("content"), i)))
    if turns[-1][0] != "user" or not turns[-1][1].strip():
        raise ApiError(400, "the last message must be the user's question (role 'user', non-empty content)",
                       param="messages")
    history, pending = [], None
    for role, text in turns[:-1]:
        if role == "user":
            pending = text
        elif role == "assistant" and pending is not None:
            history.append((pending, text.split(SOURCES_HEADER, 1)[0]))
            pending = None
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be true or false", param="stream")
    opts = body.get("stream_options") or {}
    out = {"model": model, "mode": MODELS[model], "question": turns[-1][1], "history": history,
           "stream": stream, "include_usage": bool(isinstance(opts, dict) and opts.get("include_usage"))}
    for key, kind in (("languages", list), ("sources", list), ("top_k", int)):
        value = body.get(key)
        if value is not None and not isinstance(value, kind):
            raise ApiError(400, f"'{key}' must be a {kind.__name__}", param=key)
        out[key] = value or None
    return out


def _content(content: Any, i: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]; other parts are ignored
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    if content is None:
        return ""
    raise ApiError(400, f"messages[{i}].content must be a string or a list of text parts",
                   param=f"messages[{i}].content")


# ---------------------------------------------------------------------- answer -> response
def citation_json(c: Citation) -> dict[str, Any]:
    d = asdict(c)
    return {k: d[k] for k in ("n", "doc_id", "title", "source", "page", "location", "quote", "char_start",
                              "char_end", "language", "score")}


def content_of(answer: Answer) -> str:
    """The answer text with its numbered marks, then one line per citation (or related passage)."""
    items = answer.related if answer.abstained else answer.citations
    if not items:
        return answer.text
    head = "Related passages (not citations):\n" if answer.abstained else ""
    lines = [f"[{c.n}] {c.title or c.doc_id}" + (f", {c.location}" if c.location else "") + f": “{c.quote}”"
             for c in items]
    return answer.text + SOURCES_HEADER + head + "\n".join(lines)


def extras(answer: Answer) -> dict[str, Any]:
    d = answer.to_dict()
    return {"citations": [citation_json(c) for c in answer.citations],
            "related": [citation_json(c) for c in answer.related], "abstained": answer.abstained,
            "conflicts": d["conflicts"], "fallback": answer.fallback, "verified": answer.verified,
            "verification": answer.verification, "mode": answer.mode, "language": answer.language,
            "timings": answer.timings}


def usage(req: dict, content: str) -> dict[str, int]:
    from index.chunking import count_tokens

    prompt = count_tokens(req["question"]) + sum(count_tokens(q) + count_tokens(a) for q, a in req["history"])
    done = count_tokens(content)
    return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}


def completion(req: dict, answer: Answer, cid: str, created: int) -> dict[str, Any]:
    content = content_of(answer)
    return {"id": cid, "object": "chat.completion", "created": created, "model": req["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": usage(req, content), **extras(answer)}


def sse_chunks(req: dict, events: Callable[[], Iterator[Event]], cid: str, created: int) -> Iterator[str]:
    """The SSE body: role, keep-alives while the answer is made, the verified content, a final
    chunk with finish_reason and the citations, optional usage, then [DONE]. ``events`` starts
    the chain (it takes the answering slot only once the client reads)."""

    def chunk(delta: dict, finish: str | None = None, **more) -> str:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": req["model"],
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **more}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    try:
        answer, tokens = None, 0
        for event in events():
            if event.type == "answer":
                answer = event.payload  # only the last (final) stage is content: verified text or the quote
                if answer.stage == "quote":  # the cited quote at once, outside the content: a client that
                    # knows it (``rag_stage``) shows it until the content arrives; others ignore the field
                    yield chunk({}, rag_stage="quote", rag_quote={"content": content_of(answer), **extras(answer)})
            elif event.type == "token":
                tokens += 1
                if tokens % 8 == 1:
                    yield ": drafting\n\n"  # an SSE comment: keeps proxies and clients waiting
            else:
                yield f": {event.type}\n\n"
        assert answer is not None
        content = content_of(answer)
        yield chunk({"content": content})
        yield chunk({}, "stop", **extras(answer))
        if req["include_usage"]:
            body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": req["model"],
                    "choices": [], "usage": usage(req, content)}
            yield f"data: {json.dumps(body)}\n\n"
    except ApiError as exc:  # headers are sent: the error travels as an event, as OpenAI's does
        yield f"data: {json.dumps(exc.body(), ensure_ascii=False)}\n\n"
    except RagError as exc:
        yield f"data: {json.dumps(ApiError(503, str(exc), 'server_error').body(), ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"


# ---------------------------------------------------------------------- routes
def openai_router(qa, require_auth: bool, keys: Callable[[], set[str]] | None = None, creds=None):
    """FastAPI routes for ``qa`` (an ``Assistant``). ``require_auth``: the app is not on loopback.
    ``creds`` (``rag.auth.Credentials``): when the UI has users, a bearer token that is one of their
    passwords is accepted too, and some token is always required."""
    router = APIRouter(prefix="/v1")
    slot = threading.Lock()  # one answer at a time: the chain holds a core (and the LLM server) busy
    get_keys = keys or (lambda: api_keys(qa.settings))

    def fail(exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status, headers=headers)

    def authorize(request: Request) -> None:
        header = request.headers.get("authorization")
        scheme, _, token = (header or "").partition(" ")
        users = creds is not None and creds.enabled
        if users and scheme.lower() == "bearer" and creds.role_for_token(token.strip()):
            return
        keys = get_keys()
        check_bearer(header, keys or ({"\x00no-key"} if users else set()), require_auth or users)

    def model_card(name: str) -> dict[str, Any]:
        return {"id": name, "object": "model", "created": 0, "owned_by": "rag-cite"}

    @router.get("/models")
    def list_models(request: Request):
        try:
            authorize(request)
        except ApiError as exc:
            return fail(exc)
        available = qa.available_modes()
        return {"object": "list", "data": [model_card(m) for m, mode in MODELS.items() if mode in available]}

    @router.get("/models/{model}")
    def get_model(model: str, request: Request):
        try:
            authorize(request)
            if model not in MODELS or MODELS[model] not in qa.available_modes():
                raise ApiError(404, f"the model '{model}' does not exist here (GET /v1/models)", param="model",
                               code="model_not_found")
        except ApiError as exc:
            return fail(exc)
        return model_card(model)

    def answering(req: dict) -> Iterator[Event]:
        """The chain's events, holding the one answering slot while they run."""
        if not slot.acquire(timeout=BUSY_SECONDS):
            raise ApiError(503, f"busy: another answer took over {BUSY_SECONDS:.0f} s; retry later", "server_error",
                           code="busy")
        try:
            yield from qa.stream(req["question"], mode=req["mode"], history=req["history"],
                                 languages=req["languages"], sources=req["sources"], top_k=req["top_k"])
        finally:
            slot.release()

    def answer_of(req: dict) -> Answer:
        try:
            answers = [e.payload for e in answering(req) if e.type == "answer"]
            return answers[-1]  # the final stage (a quote stage may come first)
        except QuestionError as exc:
            raise ApiError(400, str(exc), param="messages") from None
        except RagError as exc:
            raise ApiError(503, str(exc), "server_error") from None

    @router.post("/chat/completions")
    async def chat_completions(request: Request):
        try:
            authorize(request)
            try:
                body = await request.json()
            except ValueError:
                raise ApiError(400, "the request body is not valid JSON") from None
            req = parse_request(body, qa.available_modes())
            cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
            if req["stream"]:
                try:  # a bad question is a 400 before any event is sent
                    clean_question(req["question"], qa.settings.max_question_chars)
                except QuestionError as exc:
                    raise ApiError(400, str(exc), param="messages") from None
                return StreamingResponse(sse_chunks(req, lambda: answering(req), cid, created),
                                         media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
            answer = await run_in_threadpool(answer_of, req)
            return completion(req, answer, cid, created)
        except ApiError as exc:
            return fail(exc)
        except RagError as exc:
            return fail(ApiError(503, str(exc), "server_error"))

    @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def unknown(rest: str, request: Request):
        return fail(ApiError(404, f"no such endpoint: {request.method} /v1/{rest}; this server has GET /v1/models "
                                  "and POST /v1/chat/completions", code="unknown_url"))

    return router
