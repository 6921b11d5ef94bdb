"""Ingestion side: read -> detect language -> chunk -> embed -> store. Never imports ``rag``.

Importing it changes nothing in the process environment; the entry points apply their own
defaults (``rag.defaults``).
"""
