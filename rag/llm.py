"""Grounded answer generation with any OpenAI-compatible server (the local llama.cpp one included).

    >>> gen = generator_for(Settings.load(), "local")          # starts the bundled model's server
    >>> draft = gen.generate("Who joins?", "English", evidence)  # Draft(text=..., cited=[1], ...)

The model sees only the selected evidence sentences, numbered [1]..[n], and must reply with JSON
``{"answer": str, "evidence": [int]}`` constrained by ``prompts/answer.schema.json`` (sent as
OpenAI ``response_format`` ``json_schema``). ``stream`` yields the growing answer text as plain
deltas, then one ``Draft``. The caller decides abstention and verifies the draft.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import queue
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from string import Template
from typing import Any

import httpx

from rag.context import Context
from rag.errors import LLMError
from rag.types import Evidence

log = logging.getLogger(__name__)

LANGUAGES = {
    "en": "English", "pt": "Portuguese", "es": "Spanish", "de": "German", "fr": "French",
    "it": "Italian", "nl": "Dutch", "pl": "Polish", "sv": "Swedish", "da": "Danish", "ca": "Catalan",
    "ro": "Romanian", "cs": "Czech", "ru": "Russian", "uk": "Ukrainian", "tr": "Turkish",
    "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "ar": "Arabic", "hi": "Hindi",
}
_MARKERS = re.compile(r"\s*\[\s*\d+(?:\s*[,;–-]\s*\d+)*\s*\]")
_ANSWER_KEY = re.compile(r'"answer"\s*:\s*"')
_HISTORY_TURNS, _HISTORY_CHARS = 3, 300


def language_name(code: str) -> str:
    """English name of an ISO 639-1 code (``"pt-BR"`` -> ``"Portuguese"``); unknown codes pass through."""
    base = re.split(r"[-_]", (code or "").strip().lower())[0]
    return LANGUAGES.get(base, code or "the language of the question")


@dataclass(frozen=True)
class Draft:
    """The model's parsed reply: answer text (no markers), cited sentence numbers, raw JSON, timings.

    ``cited`` keeps only numbers in 1..n, deduplicated; ``ttft`` is the time to the server's first
    token (the JSON's ``{"``), ``seconds`` the whole request; token counts come from the server.
    """

    text: str
    cited: list[int]
    raw: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    ttft: float
    found: bool = True  # False when the model said the sentences do not answer the question


@cache
def prompt_parts(name: str) -> tuple[Template, Template]:
    """(system, user) templates of ``rag/prompts/<name>.txt`` (split at its ``=== user ===`` line)."""
    text = files("rag").joinpath(f"prompts/{name}.txt").read_text(encoding="utf-8")
    system, user = text.split("=== user ===\n", 1)
    return Template(system.strip()), Template(user.strip())


@cache
def answer_schema() -> dict[str, Any]:
    return json.loads(files("rag").joinpath("prompts/answer.schema.json").read_text(encoding="utf-8"))


def _one_line(text: str, limit: int = 0) -> str:
    text = " ".join(text.split())  # a sentence cannot fake a new numbered line or a "Question:" line
    return text[:limit].rstrip() + "…" if limit and len(text) > limit else text


def _passages(evidence: list[Evidence] | Context) -> str:
    """Numbered sentences, grouped in passages (one block per passage, its document and language)."""
    if not isinstance(evidence, Context):
        return "\n".join(f"[{e.n}] {_one_line(e.text)}" for e in evidence)
    blocks = []
    for i, p in enumerate(evidence.passages, 1):
        head = f"Passage {i} ({_one_line(p[0].title or p[0].doc_id, 80)}; {language_name(p[0].language)}):"
        blocks.append("\n".join([head, *(f"[{s.n}] {_one_line(s.text)}" for s in p)]))
    return "\n\n".join(blocks)


def build_messages(
    question: str, language: str, evidence: list[Evidence] | Context,
    history: list[tuple[str, str]] | None = None,
) -> list[dict[str, str]]:
    """The chat messages: system rules, then history, numbered sentences (in passages when given a
    ``Context``) and the question.

    ``language`` is a name ("Portuguese") or an ISO code ("pt"), which is turned into its name.
    """
    language = language_name(language)
    system, user = prompt_parts("answer")
    turns = (history or [])[-_HISTORY_TURNS:]
    past = "".join(
        f"Q: {_one_line(q, _HISTORY_CHARS)}\nA: {_one_line(a, _HISTORY_CHARS)}\n" for q, a in turns
    )
    values = {
        "language": language,
        "question": _one_line(question),
        "sentences": _passages(evidence),
        "history": f"Earlier in this conversation (for context only):\n{past}" if past else "",
    }
    return [
        {"role": "system", "content": system.safe_substitute(values)},
        {"role": "user", "content": user.safe_substitute(values).strip()},
    ]


def clean_answer(text: str) -> str:
    """Drop citation markers like ``[1]`` or ``[1, 2]`` (code renders citations) and outer whitespace."""
    return _MARKERS.sub("", text).strip()


class _AnswerExtractor:
    """Feed raw JSON chunks; ``visible()`` is the cleaned "answer" string decoded so far."""

    def __init__(self) -> None:
        self.raw, self.start, self.closed = "", -1, False

    def feed(self, chunk: str) -> str:
        self.raw += chunk
        if self.start < 0:
            m = _ANSWER_KEY.search(self.raw)
            if not m:
                return ""
            self.start = m.end()
        i, raw = self.start, self.raw
        while i < len(raw):
            c = raw[i]
            if c == '"':
                self.closed = True
                break
            if c == "\\":
                step = 6 if raw[i + 1 : i + 2] == "u" else 2
                if i + step > len(raw) or (step == 6 and raw[i + 2 : i + 4].lower() in ("d8", "d9", "da", "db")
                                           and i + 12 > len(raw)):
                    break  # incomplete escape (or half a surrogate pair): wait for more
                i += step
            else:
                i += 1
        try:
            decoded = json.loads(f'"{raw[self.start:i]}"', strict=False)
        except ValueError:
            return ""
        if not self.closed and "[" in decoded and "]" not in decoded[decoded.rindex("[") :]:
            decoded = decoded[: decoded.rindex("[")]  # hold back a possibly unfinished [n marker
        return clean_answer(decoded)


def parse_found(raw: str) -> bool:
    """The reply's "found" flag (True when missing or unreadable: the answer is then verified as usual)."""
    m = re.search(r'"found"\s*:\s*(true|false)', raw)
    return not (m and m.group(1) == "false")


def parse_reply(raw: str, n_evidence: int) -> tuple[str, list[int]]:
    """(answer text, cited numbers within 1..n_evidence) from the model's JSON; LLMError if unusable."""
    try:
        data = json.loads(raw, strict=False)
    except ValueError:
        start = raw.find("{")
        try:
            data = json.JSONDecoder(strict=False).raw_decode(raw[start:])[0] if start >= 0 else None
        except ValueError:
            data = None
    if not isinstance(data, dict) or not isinstance(data.get("answer"), str):
        raise LLMError(f"LLM returned unparseable output: {raw[:300]!r}")
    numbers = data.get("evidence") if isinstance(data.get("evidence"), list) else []
    numbers += [int(n) for n in re.findall(r"\d+", " ".join(_MARKERS.findall(data["answer"])))]
    cited: list[int] = []
    for n in numbers:
        if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= n_evidence and n not in cited:
            cited.append(n)
    return clean_answer(data["answer"]), cited


class LLMGenerator:
    """Answers from evidence with an OpenAI-compatible chat server, through llama-index's OpenAILike.

        >>> gen = LLMGenerator("http://127.0.0.1:8080/v1", "qwen", timeout=60)
        >>> for part in gen.stream("Who joins?", "English", evidence): print(part)  # str..., Draft

    ``timeout`` bounds the whole request (connect to last token), not each read.
    """

    def __init__(
        self, base_url: str, model: str, api_key: str = "", timeout: float = 120, max_tokens: int = 256,
        temperature: float = 0.0, name: str = "local",
    ) -> None:
        from llama_index.llms.openai_like import OpenAILike  # heavy import: only when an LLM is used

        self.base_url, self.model, self.name = base_url.rstrip("/"), model, name
        self.timeout, self.max_tokens, self.temperature = float(timeout), max_tokens, temperature
        self._key = api_key
        # Our own httpx client, only to learn each streaming response so that an abandoned stream
        # closes its connection: llama-index's instrumentation keeps the stream alive otherwise and
        # the server would go on generating for nobody.
        self._tls = threading.local()
        http = httpx.Client(timeout=httpx.Timeout(self.timeout), event_hooks={"response": [self._remember]})
        self._llm = OpenAILike(
            model=model, api_base=self.base_url,
            api_key=api_key or "none",  # never empty: the client would fall back to $OPENAI_API_KEY
            is_chat_model=True, is_function_calling_model=False, context_window=4096,
            max_tokens=max_tokens, temperature=temperature, timeout=self.timeout, max_retries=0,
            reuse_client=True, http_client=http,
        )

    def _remember(self, response: httpx.Response) -> None:
        self._tls.response = response

    def __repr__(self) -> str:
        return f"LLMGenerator(name={self.name!r}, base_url={self.base_url!r}, model={self.model!r})"

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _error(self, exc: BaseException) -> LLMError:
        import openai

        where = f"{self.name} LLM server at {self.base_url}"
        if isinstance(exc, LLMError):
            return exc
        if isinstance(exc, openai.APITimeoutError):
            msg = f"{where} did not answer within {self.timeout:g} s"
        elif isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            msg = f"cannot reach the {where}: {type(cause).__name__}: {cause}"
        elif isinstance(exc, openai.APIStatusError):
            body = exc.response.text[:300] if exc.response is not None else ""
            msg = f"{where} answered HTTP {exc.status_code}: {body}"
        else:
            msg = f"{where} sent an unusable response: {type(exc).__name__}: {exc}"
        return LLMError(self._scrub(msg)[:1000])

    def response_format(self, n_evidence: int) -> dict[str, Any]:
        """OpenAI ``response_format`` carrying the answer schema, numbers limited to 1..n."""
        schema = copy.deepcopy(answer_schema())
        schema["properties"]["evidence"]["items"]["maximum"] = max(n_evidence, 1)
        return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}

    def stream(
        self, question: str, language: str, evidence: list[Evidence] | Context,
        history: list[tuple[str, str]] | None = None,
    ) -> Iterator[str | Draft]:
        """Yield answer-text deltas as they arrive, then one Draft. Raises LLMError."""
        from llama_index.core.llms import ChatMessage

        messages = [ChatMessage(role=m["role"], content=m["content"])
                    for m in build_messages(question, language, evidence, history)]
        n_max = max((e.n for e in (evidence.sentences if isinstance(evidence, Context) else evidence)), default=0)
        kwargs = {"response_format": self.response_format(n_max),
                  "stream_options": {"include_usage": True}}
        t0 = time.monotonic()
        deadline = t0 + self.timeout
        chunks: queue.Queue[tuple[str, Any]] = queue.Queue()
        cancel = threading.Event()

        def work() -> None:  # blocking reads happen here, so the caller's deadline is exact
            try:
                for r in self._llm.stream_chat(messages, **kwargs):
                    if cancel.is_set():
                        return
                    choices = getattr(r.raw, "choices", None) or [None]
                    finish = getattr(choices[0], "finish_reason", None)
                    chunks.put(("delta", (r.delta or "", getattr(r.raw, "usage", None), finish)))
                chunks.put(("end", None))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                chunks.put(("error", exc))
            finally:  # closing the connection makes llama.cpp stop generating
                response, self._tls.response = getattr(self._tls, "response", None), None
                if response is not None:
                    response.close()

        threading.Thread(target=work, name=f"llm-{self.name}", daemon=True).start()
        extractor, shown, ttft, usage, n_chunks, finish = _AnswerExtractor(), "", 0.0, None, 0, None
        try:
            while True:
                try:
                    kind, payload = chunks.get(timeout=max(deadline - time.monotonic(), 0.001))
                except queue.Empty:
                    raise LLMError(f"{self.name} LLM server at {self.base_url} did not finish "
                                   f"within {self.timeout:g} s") from None
                if kind == "error":
                    raise self._error(payload) from None
                if kind == "end":
                    break
                delta, chunk_usage, chunk_finish = payload
                usage, finish = chunk_usage or usage, chunk_finish or finish
                if delta:
                    n_chunks += 1
                    ttft = ttft or time.monotonic() - t0
                    visible = extractor.feed(delta)
                    if len(visible) > len(shown) and visible.startswith(shown):
                        yield visible[len(shown):]
                        shown = visible
        finally:
            cancel.set()
        try:
            text, cited = parse_reply(extractor.raw, n_max)
        except LLMError as exc:
            if finish == "length":
                raise LLMError(f"LLM returned unparseable output: cut off at max_tokens={self.max_tokens}: "
                               f"{extractor.raw[:300]!r}") from None
            raise exc from None
        if text != shown and text.startswith(shown):
            yield text[len(shown):]
        seconds = time.monotonic() - t0
        draft = Draft(
            text=text, cited=cited, raw=extractor.raw,
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or n_chunks,
            seconds=seconds, ttft=ttft, found=parse_found(extractor.raw),
        )
        log.info("%s LLM: %d prompt + %d completion tokens, ttft %.2f s, total %.2f s", self.name,
                 draft.prompt_tokens, draft.completion_tokens, ttft, seconds)
        yield draft

    def generate(
        self, question: str, language: str, evidence: list[Evidence] | Context,
        history: list[tuple[str, str]] | None = None,
    ) -> Draft:
        """``stream`` consumed to its Draft."""
        for part in self.stream(question, language, evidence, history):
            if isinstance(part, Draft):
                return part
        raise LLMError(f"{self.name} LLM server at {self.base_url} returned no answer")

    def translate(self, text: str, source: str, language: str, avoid: Sequence[str] = ()) -> str:
        """The model's translation of one sentence from ``source`` into ``language`` (codes or names).
        The caller checks it (names, numbers by value, negation, words left untranslated) before
        showing it; ``avoid``: the words a first attempt left in ``source``, named in the request."""
        from llama_index.core.llms import ChatMessage

        system, user = prompt_parts("translate")
        values = {"language": language_name(language), "source": language_name(source), "text": _one_line(text)}
        values["avoid"] = (f"These {values['source']} words must be translated too: {', '.join(avoid)}."
                           if avoid else "")
        messages = [ChatMessage(role="system", content=system.safe_substitute(values)),
                    ChatMessage(role="user", content=user.safe_substitute(values).strip())]
        try:
            reply = self._llm.chat(messages, max_tokens=min(self.max_tokens, 2 * len(text) // 3 + 32))
        except Exception as exc:  # noqa: BLE001 - every client error becomes an LLMError
            raise self._error(exc) from None
        return " ".join(str(reply.message.content or "").split()).strip().strip('"“”«»')

    def rewrite(self, question: str, history: list[tuple[str, str]], language: str) -> str:
        """A follow-up question rewritten into a standalone one in ``language``, using the last turns."""
        from llama_index.core.llms import ChatMessage

        system, user = prompt_parts("rewrite")
        past = "".join(f"Q: {_one_line(q, _HISTORY_CHARS)}\nA: {_one_line(a, _HISTORY_CHARS)}\n"
                       for q, a in history[-_HISTORY_TURNS:])
        values = {"language": language_name(language), "history": past, "question": _one_line(question)}
        messages = [ChatMessage(role="system", content=system.safe_substitute(values)),
                    ChatMessage(role="user", content=user.safe_substitute(values))]
        try:
            reply = self._llm.chat(messages, max_tokens=64)
        except Exception as exc:  # noqa: BLE001 - every client error becomes an LLMError
            raise self._error(exc) from None
        return " ".join(str(reply.message.content or "").split()).strip().strip('"“”«»')

    def answers(self, question: str, passage: str) -> float:
        """The model's probability that ``passage`` states the answer to ``question``: one reply
        token (``prompts/check.txt``), P(yes) / (P(yes) + P(no)) from its log-probabilities. A
        server that sends none gives 1.0 or 0.0 from the reply word. Used by ``rag/check.py``."""
        system, user = prompt_parts("check")
        values = {"passage": _one_line(passage), "question": _one_line(question)}
        body = {"model": self.model, "max_tokens": 1, "temperature": 0, "logprobs": True, "top_logprobs": 10,
                "messages": [{"role": "system", "content": system.safe_substitute(values)},
                             {"role": "user", "content": user.safe_substitute(values)}]}
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        where = f"{self.name} LLM server at {self.base_url}"
        try:
            response = httpx.post(f"{self.base_url}/chat/completions", json=body, headers=headers, timeout=self.timeout)
            response.raise_for_status()
            choice = response.json()["choices"][0]
        except httpx.TimeoutException:
            raise LLMError(f"{where} did not answer within {self.timeout:g} s") from None
        except httpx.HTTPStatusError as exc:
            raise LLMError(self._scrub(f"{where} answered HTTP {exc.response.status_code}: "
                                       f"{exc.response.text[:300]}")) from None
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMError(self._scrub(f"{where} sent an unusable response: {type(exc).__name__}: {exc}")) from None
        tokens = ((choice.get("logprobs") or {}).get("content") or [{}])[0].get("top_logprobs") or []
        return yes_probability([(t.get("token", ""), t.get("logprob", -math.inf)) for t in tokens],
                               str((choice.get("message") or {}).get("content") or ""))

    def warm(self) -> None:
        """One 1-token request with the answer prompt's rules, so the server has loaded the model and
        cached the shared prompt prefix before the first question."""
        from llama_index.core.llms import ChatMessage

        messages = [ChatMessage(role=m["role"], content=m["content"]) for m in build_messages("warm up", "en", [])]
        try:
            self._llm.chat(messages, max_tokens=1)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc) from None

    def ping(self, timeout: float = 3) -> bool:
        """True if ``GET {base_url}/models`` answers 200 within ``timeout``."""
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        try:
            return httpx.get(f"{self.base_url}/models", headers=headers, timeout=timeout).status_code == 200
        except httpx.HTTPError:
            return False


def yes_probability(top: Sequence[tuple[str, float]], reply: str) -> float:
    """P(yes) / (P(yes) + P(no)) over a first token's top (token, logprob) pairs, any case and
    spacing ("Yes", " yes"); without either among them, 1.0 if ``reply`` starts with "yes" else 0.0.

    >>> round(yes_probability([("Yes", -0.1), ("No", -2.4)], "Yes"), 2)
    0.91
    """
    yes = sum(math.exp(lp) for t, lp in top if t.strip().lower() == "yes")
    no = sum(math.exp(lp) for t, lp in top if t.strip().lower() == "no")
    if yes + no > 0:
        return yes / (yes + no)
    return 1.0 if reply.strip().lower().startswith("yes") else 0.0


def generator_for(settings: Any, mode: str) -> LLMGenerator:
    """The generator for ``mode`` "local" (bundled/configured GGUF, server started here) or "openai"."""
    common = {"timeout": settings.llm_timeout, "max_tokens": settings.llm_max_tokens,
              "temperature": settings.llm_temperature}
    if mode == "local":
        from rag.llm_server import get_local_server

        server = get_local_server(settings)
        return LLMGenerator(server.base_url, server.model_path.stem, api_key=server.api_key,
                            name="local", **common)
    if mode == "openai":
        if not settings.llm_base_url or not settings.llm_model:
            raise LLMError("mode 'openai' needs llm_base_url and llm_model "
                           "(RAG_LLM_BASE_URL, RAG_LLM_MODEL; key in $" + settings.llm_api_key_env + ")")
        return LLMGenerator(settings.llm_base_url, settings.llm_model, api_key=settings.llm_api_key,
                            name="openai", **common)
    raise LLMError(f"no LLM generator for mode {mode!r}; use 'local' or 'openai'")
