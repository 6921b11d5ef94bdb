"""Localised fixed texts (not-found, quoted-from, conflict notice), read from prompts/messages.json.

    >>> message("pt", "not_found")
    'Não encontrado nos documentos.'
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

ANSWER_LANGUAGES = ("en", "pt", "es", "de")


@lru_cache(maxsize=1)
def _messages() -> dict:
    return json.loads(resources.files("rag").joinpath("prompts/messages.json").read_text(encoding="utf-8"))


def message(lang: str, key: str, **values: str) -> str:
    table = _messages().get(lang) or _messages()["en"]
    return table[key].format(**values) if values else table[key]


def language_name(code: str, in_lang: str = "en") -> str:
    table = _messages().get(in_lang) or _messages()["en"]
    return table["languages"].get(code, code)
