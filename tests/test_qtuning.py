"""Question tuning (index/qtuning.py, eval/qtune.py): the file format, its errors, the shipped
tuning on the real bundled model, and the chain using it. Real parts only."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eval.qtune import low_rank
from index import qtuning
from index.e5convert import BUNDLED_ID
from index.embedder import load_embedder
from index.errors import ModelError
from rag.ranker import DEFAULT_PATH, Ranker

ROOT = Path(__file__).resolve().parents[1]


def _shipped_tuning() -> Path:
    data = json.loads(DEFAULT_PATH.read_text(encoding="utf-8"))
    assert "question_tuning" in data, "the shipped ranker was fitted without a question tuning"
    return (DEFAULT_PATH.parent / data["question_tuning"]["path"]).resolve()


def test_low_rank_sets_round_trip_and_errors_name_the_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    exact = rng.normal(size=(48, 3)) @ rng.normal(size=(3, 40)) * 0.01  # rank 3: rank 8 keeps it whole
    deltas = {"encoder.layer.11.output.dense.weight": exact, "encoder.layer.11.output.dense.bias": rng.normal(size=48)}
    path = tmp_path / "t.npz"
    qtuning.write(path, {"gold_sha256": "x"}, {"all": low_rank(deltas), "0": low_rank(deltas)})
    assert qtuning.keys(path) == ["0", "all"]
    assert qtuning.read_meta(path)["gold_sha256"] == "x"
    back = qtuning.deltas(path, "all")
    for name, d in deltas.items():
        assert np.allclose(back[name], d, atol=1e-2 * np.abs(d).max() + 1e-4), name  # int8 factors
        assert not np.allclose(back[name], 0), name
    with pytest.raises(ModelError, match=r"t\.npz has no set '3' \(it has: 0, all\)"):
        qtuning.deltas(path, "3")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="broken.npz cannot be read"):
        qtuning.read_meta(broken)


def test_format_1_files_still_read(tmp_path: Path) -> None:
    """Files written before the int8 format (float16 factors ``a``, ``b``) keep working."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(6, 2)), rng.normal(size=(2, 5))
    path = tmp_path / "old.npz"
    np.savez_compressed(path, meta=np.frombuffer(json.dumps({"format": 1}).encode(), np.uint8),
                        **{"all|w|a": a.astype(np.float16), "all|w|b": b.astype(np.float16)})
    assert np.allclose(qtuning.deltas(path, "all")["w"], a @ b, atol=1e-2)


def test_a_tuning_for_another_model_is_refused(tmp_path: Path, model_dir: Path) -> None:
    path = tmp_path / "other.npz"
    qtuning.write(path, {}, {"all": {"encoder.layer.11.output.dense.weight": (np.zeros((7, 5)),)}})
    with pytest.raises(ModelError, match="does not fit this model"):
        load_embedder(BUNDLED_ID, backend="onnx", data_dir=tmp_path / "data", tuning=path)
    from rag.errors import ConfigError

    with pytest.raises(ConfigError, match="fitted for the bundled"):
        load_embedder("intfloat/some-other-model", backend="onnx", data_dir=tmp_path / "data", tuning=path)


def test_shipped_tuning_moves_questions_toward_the_answer_sentence(model_dir: Path) -> None:
    """On texts written for this test (not from the benchmark), each a sentence that names the
    question's topic and, after it, the sentence that answers: the tuned question vector is a unit
    vector, and puts the answer sentence first in more cases than the bundled model does. (Its
    cosines only rank the candidates retrieval found: it is not meant to place a question among
    unrelated texts, and does not.)"""
    tuning = _shipped_tuning()
    base = load_embedder(BUNDLED_ID, backend="onnx", data_dir=model_dir, threads=1)
    tuned = load_embedder(BUNDLED_ID, backend="onnx", data_dir=model_dir, threads=1, tuning=tuning)
    cases = [
        ("Who chairs the Rio Claro water consortium?",
         "The Rio Claro water consortium was set up in 2009 by eleven towns along the river.",
         "Since 2021 it has been chaired by the engineer Luiza Tavares."),
        ("Wann wurde die Seilbahn auf den Hochkogel erneuert?",
         "Die Seilbahn auf den Hochkogel ist eine der ältesten Österreichs.",
         "Sie wurde zuletzt im Jahr 2016 vollständig erneuert."),
        ("¿Cuántos barcos tiene la flota de Northwind?",
         "Northwind es una naviera con sede en Bergen que une las islas del norte.",
         "Su flota cuenta hoy con catorce barcos, tres de ellos eléctricos."),
        ("What does the cooperative produce?",
         "A Cooperativa Vale Verde foi fundada em 1987 por quarenta famílias.",
         "Hoje a cooperativa produz café orgânico e mel para exportação."),
        ("Quem preside o consórcio?",
         "O Rio Claro nasce na serra e atravessa onze municípios.",
         "O consórcio é presidido pela engenheira Luíza Tavares."),
    ]
    wins = {"bundled": 0, "tuned": 0}
    for question, topic, answer in cases:
        s = np.asarray(base.get_text_embedding_batch([topic, answer]))  # sentences: the bundled model's vectors
        for name, enc in (("bundled", base), ("tuned", tuned)):
            q = np.asarray(enc.get_query_embedding(question))
            assert abs(np.linalg.norm(q) - 1) < 1e-4
            wins[name] += int(s[1] @ q > s[0] @ q)
        q0, q1 = (np.asarray(e.get_query_embedding(question)) for e in (base, tuned))
        assert float(q0 @ q1) < 0.99  # the tuning changes the question's vector
    print("answer sentence first, of", len(cases), wins)
    assert wins["tuned"] > wins["bundled"], wins


def test_training_moves_the_question_toward_its_answer_sentence(model_dir: Path, monkeypatch) -> None:
    """``eval/qtune.train`` on sentences written for this test: only layers from FROM_LAYER on
    change; the question moves toward its answer sentence against the topic sentence; a group with
    no answer sentence among its candidates (unanswerable, or retrieval missed) is not trained on."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from eval import qtune
    from index.e5convert import ensure_model

    monkeypatch.setattr(qtune, "EPOCHS", 8)
    monkeypatch.setattr(qtune, "LR", 1e-4)
    enc = load_embedder(BUNDLED_ID, backend="onnx", data_dir=model_dir, threads=1)
    topic = "Die Seilbahn auf den Hochkogel ist eine der ältesten Österreichs."
    answer = "Sie wurde zuletzt im Jahr 2016 vollständig erneuert."
    other = "Im Winter fährt sie jede Viertelstunde."
    vecs = np.asarray(enc.get_text_embedding_batch([topic, answer, other]))
    asked = "When was the cable car renewed?"
    answered = (asked, vecs, np.array([False, True, False]))
    unanswered = ("Who designed the cable car's first cabins?", vecs, np.zeros(3, dtype=bool))
    directory = ensure_model(model_dir)
    deltas = qtune.train(directory, [answered, unanswered])
    assert deltas and all(int(n.split(".")[2]) >= qtune.FROM_LAYER for n in deltas)
    only = qtune.train(directory, [answered])
    assert all(np.array_equal(only[n], deltas[n]) for n in only)  # the unanswered group changed nothing

    tok = AutoTokenizer.from_pretrained(str(directory))
    model = AutoModel.from_pretrained(str(directory)).eval()
    with torch.no_grad():
        before = qtune.encode(model, tok, [asked]).numpy()[0] @ vecs.T
        params = dict(model.named_parameters())
        for name, d in deltas.items():
            params[name].add_(torch.from_numpy(d))
        after = qtune.encode(model, tok, [asked]).numpy()[0] @ vecs.T
    print("cosines to topic, answer, other: before", before.round(3), "after", after.round(3))
    assert after[1] - after[0] > before[1] - before[0] + 0.01


def test_ranker_file_names_its_tuning_and_the_set_per_fold() -> None:
    tuning = _shipped_tuning()
    assert tuning.is_file()
    assert set(qtuning.keys(tuning)) >= {"all", "0", "1", "2", "3", "4"}
    assert Ranker.load().question_tuning == str(tuning)
    assert Ranker.load().tuning_set == "all"
    assert Ranker.load(holdout=2).tuning_set == "2"  # evaluation of fold 2: the set fitted without it
    late = Ranker.load(DEFAULT_PATH.with_name("ranker-late.json"))
    assert late.question_tuning == ""  # fitted on late sentence vectors, with the bundled question vectors


def test_the_chain_chooses_evidence_with_the_tuned_question_vector(corpus_qa) -> None:
    """The evidence's cosine is the tuned encoder's, not the retrieval's own question vector."""
    from rag.components import get_embedder, get_question_embedder

    engine, question = corpus_qa.engine, "Who advises AIP?"
    got, _ = engine._retrieve(question, "en")
    evidence, vectors, _ = engine._find(question, question, got, "en")
    assert evidence and vectors[0] is not None
    v = np.asarray(vectors[0], dtype=np.float64)
    v /= np.linalg.norm(v)
    tuned = get_question_embedder(corpus_qa.settings, Ranker.load().question_tuning, "all")
    assert tuned is not get_embedder(corpus_qa.settings)
    assert abs(float(v @ np.asarray(tuned.get_query_embedding(question))) - evidence[0].cosine) < 1e-3
    assert abs(float(v @ np.asarray(got.query_embedding)) - evidence[0].cosine) > 1e-3


def test_calibrate_refuses_tuning_without_a_place_to_write_it(tmp_path: Path) -> None:
    def run_cli(*args: str):
        return subprocess.run([sys.executable, "-m", "eval", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)

    got = run_cli("calibrate", "--bench", "xquad-dev", "--tune-questions", "--data-dir", str(tmp_path / "d"))
    assert got.returncode == 2, got.stderr
    assert "--tune-questions writes the tuning next to the ranker file: give --write too" in got.stderr
    got = run_cli("calibrate", "--bench", "xquad-dev", "--question-tuning", str(tmp_path / "missing.npz"),
                  "--data-dir", str(tmp_path / "d"))
    assert got.returncode == 2, got.stderr
    assert "missing.npz: no such file" in got.stderr
