"""No global side effects on import (issue 15, row 6): importing ``rag`` / ``index`` and using the
library (index a file, answer a question) leave the host's environment as it was; the entry
points (``rag`` CLI, app, eval) apply their defaults themselves.

Real parts: a fresh Python process without any of our variables, the real embedding model and
Chroma on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from rag.defaults import DEFAULTS

SCRIPT = r"""
import json, os, sys
before = dict(os.environ)
import rag, index, index.pipeline, index.embedder, rag.assistant, rag.components  # noqa
after_import = dict(os.environ)
from rag import Assistant, Settings
qa = Assistant(Settings.load(data_dir=sys.argv[1], model_dir=sys.argv[2], mode="extractive"))
open(sys.argv[3], "w").write("The lighthouse of Porto Santo was lit in 1931.")
qa.index([sys.argv[3]])
answer = qa.ask("When was the lighthouse of Porto Santo lit?")
changed = lambda a, b: sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
print(json.dumps({"import": changed(before, after_import), "use": changed(before, dict(os.environ)),
                  "cited": [c.doc_id for c in answer.citations]}))
"""


@pytest.mark.slow
def test_library_leaves_the_host_environment_alone(tmp_path, model_dir):
    ours = set(DEFAULTS) | {"OMP_NUM_THREADS", "TIKTOKEN_CACHE_DIR"}
    env = {k: v for k, v in os.environ.items() if k not in ours and not k.startswith("RAG_")}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "d"), str(model_dir), str(tmp_path / "lh.txt")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["import"] == [], got  # importing changes nothing at all
    # using it changes none of the variables we used to set (torch, when a first ONNX export
    # imports it, sets its own TORCHINDUCTOR_CACHE_DIR: torch's doing, not ours)
    assert [k for k in got["use"] if k in ours or k.startswith(("HF_", "RAG_"))] == [], got
    assert got["cited"] == ["lh"]  # the library worked offline all the same


def test_entry_points_apply_the_defaults():
    env = {k: v for k, v in os.environ.items() if k not in DEFAULTS and k != "OMP_NUM_THREADS"}
    code = ("import os, json; from rag.cli import main; import contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['config'])\n"
            "print(json.dumps({k: os.environ.get(k) for k in ('HF_HUB_OFFLINE', 'OMP_NUM_THREADS')}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
