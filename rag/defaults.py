"""Process-wide defaults for the programs we ship, applied by their entry points only.

    >>> from rag.defaults import apply_process_defaults
    >>> apply_process_defaults()      # rag CLI, app.py, python -m eval, the test suite

Importing ``rag`` or ``index`` changes nothing in the host process: a program embedding the
library keeps its own environment, and passes what it wants through ``Settings`` (threads,
model paths, the store). Our own programs want these defaults, each kept if already set:

* ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1`` - nothing is downloaded at run time;
* ``ANONYMIZED_TELEMETRY=False``, ``GRADIO_ANALYTICS_ENABLED=False`` - no telemetry (also for the
  ``chroma run`` child of the tests);
* ``TOKENIZERS_PARALLELISM=false`` - no fork warnings from HF tokenizers;
* ``OMP_NUM_THREADS`` = ``threads`` (1: see README "Threads");
* ``HF_HUB_DISABLE_PROGRESS_BARS=1`` - model loaders' bars would bury a one-line error.
"""

from __future__ import annotations

import os

DEFAULTS = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
            "GRADIO_ANALYTICS_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def apply_process_defaults(threads: int | None = 1) -> None:
    """Set our programs' environment defaults (never overriding a value already set)."""
    os.environ.setdefault("TRANSFORMERS_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "1"))
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    if threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
