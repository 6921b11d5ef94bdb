"""The CI quality gate: the gold set must not fall below the floors in eval/ci_floors.json."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

from eval.__main__ import main as eval_main
from rag.settings import SMOKE_LLM

GOLD = str(ROOT / "eval" / "gold" / "aip.jsonl")


@pytest.mark.slow
def test_gold_set_in_extractive_mode_meets_the_floors(corpus_qa, tmp_path):
    out = tmp_path / "run"
    rc = eval_main(["run", "--gold", GOLD, "--mode", "extractive", "--data-dir", str(corpus_qa.settings.data_dir),
                    "--out", str(out), "--gate", "--no-progress"])
    metrics = json.loads((out / "metrics.json").read_text())["overall"]
    summary = {k: metrics[k]["value"] for k in ("answer_accuracy", "citation_precision", "abstention_f1")}
    print("gold set, extractive:", summary)
    assert rc == 0, f"quality gate failed: {summary}"


@pytest.mark.slow
@pytest.mark.llm
def test_llm_subset_meets_the_floors(corpus_qa, tmp_path):
    out = tmp_path / "run-llm"
    rc = eval_main(["run", "--gold", GOLD, "--mode", "llm", "--ids", "q003,q004,q040,q060", "--data-dir",
                    str(corpus_qa.settings.data_dir), "--set", f"llm_bundled={SMOKE_LLM}", "--set", "llm_threads=1",
                    "--out", str(out), "--gate", "--no-progress"])
    assert rc == 0, (out / "metrics.json").read_text()[:2000]
