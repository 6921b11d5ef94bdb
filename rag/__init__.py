"""Multilingual question answering over your documents, with verified citations.

    >>> from rag import Assistant
    >>> Assistant().ask("Who advises AIP?").text
"""

from __future__ import annotations

from rag.assistant import Assistant
from rag.errors import RagError
from rag.settings import Settings
from rag.types import Answer, Citation, Conflict, Event, Evidence, Hit

__all__ = ["Assistant", "Answer", "Citation", "Conflict", "Event", "Evidence", "Hit", "RagError", "Settings"]
