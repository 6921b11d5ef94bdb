"""Two-stage answers in a real browser with a real model: the cited quote is on screen at once,
the model's answer (verified, or the reason it was not used) follows.

The app runs in ``auto`` mode with the bundled 0.5B smoke model on a real llama.cpp server,
started in the background when the app starts. Times are measured from pressing Enter to the
first answer text in the chat (the quote stage) and to the final answer, and printed; the only
timing assert is a generous bound (< 5 s for the quote, against tens of seconds for a model
answer on this machine) and that the quote comes first.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from conftest import ROOT, app_env, start_app, stop_app
from test_ui import BOT, CHROMIUM, CHROMIUM_ARGS

from rag.settings import SMOKE_LLM

pytestmark = [pytest.mark.browser, pytest.mark.llm, pytest.mark.slow]

QUOTE_MARK = "follows once it is verified"  # only the quote stage says this (app.stage_label)
# An abstention is decided before any generation and shown at once, in the reader's language.
NOT_FOUND = tuple(m["not_found"] for m in json.loads((ROOT / "rag" / "prompts" / "messages.json").read_text(
    encoding="utf-8")).values())
FINAL_MARKS = ("Verified answer", "model answer not used", "No clear answer", *NOT_FOUND)
QUESTIONS = ["Who advises AIP?", "Quem assessora a AIP?", "Wie viel will die AIP mobilisieren?"]


@pytest.fixture(scope="module")
def llm_app(tmp_path_factory, model_dir):
    data = tmp_path_factory.mktemp("ui-llm-data")
    env = app_env(data, model_dir, RAG_MODE="auto", RAG_LLM_BUNDLED=SMOKE_LLM, RAG_LLM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "rag", "index", "corpus"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    proc, url = start_app(env, data / "app.log", ready="/")
    try:
        yield url
    finally:
        stop_app(proc, wait=20)


def _wait_text(page, predicate, timeout: float) -> tuple[float, str]:
    """Poll the newest bot message until ``predicate(text)``; (monotonic time, text)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bots = page.locator(BOT)
        text = bots.last.inner_text() if bots.count() else ""
        if predicate(text):
            return time.monotonic(), text
        time.sleep(0.05)
    raise AssertionError(f"timed out; last message: {text[:500]!r}")


def test_quote_at_once_then_the_model_answer(llm_app):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(llm_app)
        page.wait_for_selector("#question textarea", timeout=60_000)
        status = page.locator("#llm-status")
        assert "warming up" in status.inner_text() or "ready" in status.inner_text()  # said, either way
        page.wait_for_function("document.querySelector('#llm-status').innerText.includes('ready')",
                               timeout=240_000)
        rows = []
        for i, question in enumerate(QUESTIONS):
            page.fill("#question textarea", question)
            t0 = time.monotonic()
            page.press("#question textarea", "Enter")
            page.locator(BOT).nth(i).wait_for(timeout=30_000)
            t_first, first = _wait_text(page, lambda t: "“" in t or any(m in t for m in FINAL_MARKS), 30)
            t_final, final = _wait_text(page, lambda t: any(m in t for m in FINAL_MARKS) and "timings (" in t, 240)
            rows.append((question, t_first - t0, t_final - t0, final.splitlines()[0]))
            # the first text was the quote stage, or an abstention (final at once)
            assert QUOTE_MARK in first or any(m in first for m in NOT_FOUND), first
            # the model's answer, not shown, is said so and cites nothing; so does an abstention
            if "No clear answer" not in final and not any(m in final for m in NOT_FOUND):
                assert "[" in final  # the final answer cites
        browser.close()
    for q, first, final, label in rows:
        print(f"{q!r}: first answer text after {first:.2f} s, final after {final:.2f} s ({label})")
    for q, first, final, _ in rows:
        assert first < 5.0, (q, first)  # "at once", against ~10-60 s for the model's answer here
        assert first <= final
