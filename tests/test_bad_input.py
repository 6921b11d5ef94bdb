"""More bad input (issue 15, row 7): each file fails with a clear message naming it and what to do,
the rest of the batch goes on, and what was indexed before stays intact.

Real parts: the converted model, Chroma on disk, pypdf on real (encrypted, damaged) PDFs, the
`rag` CLI in a subprocess, and a real size-limited tmpfs for the disk that fills up."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import run_cli
from test_index import _minimal_pdf
from test_writers import _snapshot

from index.readers import READERS, TextReader

EARLIER = "The Alvor lighthouse was painted red and white in 1952."
GOOD = "The Mértola bridge carries forty thousand cars a week."


def _encrypted(user_password: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(_minimal_pdf("Secret memo about the Faro harbour."))))
    writer.encrypt(user_password=user_password, owner_password="owner-pw", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _committed(qa) -> dict[str, str]:
    return {d.doc_id: d.content_hash for d in qa.documents()}


def test_bad_files_fail_clearly_and_the_rest_is_indexed(tmp_path, make_settings):
    from rag import Assistant

    qa = Assistant(make_settings())
    (tmp_path / "before").mkdir()
    (tmp_path / "before" / "earlier.txt").write_text(EARLIER)
    qa.index([tmp_path / "before"])
    kept = _committed(qa)

    d = tmp_path / "batch"
    d.mkdir()
    (d / "good.txt").write_text(GOOD)
    (d / "locked.pdf").write_bytes(_encrypted("s3cret"))
    (d / "open-encrypted.pdf").write_bytes(_encrypted(""))  # encrypted, but no password needed to read
    (d / "garbage.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(4000))
    (d / "truncated.pdf").write_bytes(_minimal_pdf("Half a document about Tavira.")[:300])
    with open(d / "huge.txt", "w") as f:  # 200 MB on one line
        chunk = "a" * (1 << 20)
        for _ in range(200):
            f.write(chunk)
    odd = d / "re\u202eport\x07 \u200fq.txt"
    odd.write_text("The Óbidos wall is one and a half kilometres long.")
    report = qa.index([d], remove_missing=False)
    by_name = {Path(r.path).name: r for r in report.results}
    assert by_name["good.txt"].status == "added" and by_name["open-encrypted.pdf"].status == "added"
    assert by_name[odd.name].status == "added" and by_name[odd.name].doc_id == "re_port_q"
    assert "encrypted (password-protected)" in by_name["locked.pdf"].reason and "qpdf" in by_name["locked.pdf"].reason
    for name in ("garbage.pdf", "truncated.pdf"):
        assert by_name[name].status == "failed", by_name[name]
        assert "readable PDF" in by_name[name].reason or "could not be parsed" in by_name[name].reason
    assert by_name["huge.txt"].status == "failed" and "over the 20 MB limit (max_file_mb)" in by_name["huge.txt"].reason
    after = _committed(qa)
    assert {k: after[k] for k in kept} == kept  # what was indexed before is intact
    assert set(after) == {"earlier", "good", "open-encrypted", "re_port_q"}
    assert "Alvor" in qa.ask("When was the Alvor lighthouse painted?").text
    assert any(c.source == str(odd) for c in qa.ask("How long is the Óbidos wall?").citations)


class _Meddler(TextReader):
    """A text reader that changes or deletes its file while reading it (as another program
    writing or removing it at that moment would)."""

    suffixes = (".tst",)
    mode = "normal"

    def to_text(self, data: bytes, path: Path) -> str:
        if self.mode == "change":
            with open(path, "a", encoding="utf-8") as f:
                f.write(" More text arriving.")
        elif self.mode == "vanish":
            path.unlink()
        return super().to_text(data, path)


def test_a_file_changing_or_vanishing_while_read_keeps_the_committed_version(tmp_path, make_settings, monkeypatch):
    from rag import Assistant

    meddler = _Meddler()
    monkeypatch.setitem(READERS, ".tst", meddler)
    qa = Assistant(make_settings())
    (tmp_path / "moving.tst").write_text(EARLIER)
    (tmp_path / "other.txt").write_text(GOOD)
    qa.index([tmp_path])
    kept = _committed(qa)
    meddler.mode = "change"
    report = qa.index([tmp_path / "moving.tst"])
    (result,) = report.results
    assert result.status == "failed" and "changed while it was being read" in result.reason
    assert _committed(qa) == kept and "Alvor" in qa.ask("When was the Alvor lighthouse painted?").text
    meddler.mode = "vanish"
    (result,) = qa.index([tmp_path / "moving.tst"], remove_missing=False).results
    assert result.status == "failed" and "vanished while it was being read" in result.reason
    assert _committed(qa) == kept  # a later run on the folder removes it, as for any deleted file


def test_cli_prints_control_characters_in_names_escaped(tmp_path, model_dir):
    d = tmp_path / "in"
    d.mkdir()
    (d / "bad\u202e\x1b[31m.pdf").write_bytes(b"not a pdf at all")
    done = run_cli("--data-dir", str(tmp_path / "data"), "index", str(d), env={"RAG_MODEL_DIR": str(model_dir)})
    assert done.returncode == 1  # one failed file
    assert "\x1b" not in done.stdout and "\u202e" not in done.stdout
    assert "bad\\u202e\\x1b[31m.pdf" in done.stdout and "failed" in done.stdout


def _tmpfs(path: Path, mb: int) -> None:
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mb}m", "tmpfs", str(path)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode()[:200]}")


def _fill(disk: Path, leave_kb: int) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass
    with open(filler, "r+b") as f:
        f.truncate(max(0, filler.stat().st_size - leave_kb * 1024))
    return filler


@pytest.mark.slow
def test_disk_filling_up_during_indexing_loses_nothing(tmp_path, model_dir):
    from test_writers import TOPICS

    from rag import components
    from rag.settings import Settings

    first, second = tmp_path / "first", tmp_path / "second"
    for folder, topics in ((first, TOPICS[:2]), (second, TOPICS[2:])):
        folder.mkdir()
        for i, topic in enumerate(topics):
            lines = [f"Log {i} of {topic}: in year {1900 + k} the count was {17 * k + i}." for k in range(60)]
            (folder / f"{folder.name}{i}.txt").write_text("\n".join(lines))
    disk = tmp_path / "disk"
    _tmpfs(disk, 48)
    try:
        env = {"RAG_MODEL_DIR": str(model_dir), "RAG_DATA_DIR": str(disk / "data"), "RAG_WRITE_LEASE_SECONDS": "5",
               "RAG_WRITE_WAIT_SECONDS": "30"}
        assert run_cli("index", str(first), env=env, timeout=300).returncode == 0
        filler = _fill(disk, leave_kb=64)
        full = run_cli("index", str(first), str(second), env=env, timeout=300)
        assert full.returncode != 0
        message = full.stderr + full.stdout
        assert "is full" in message and "free some space" in message, message[-2000:]
        assert "Traceback" not in full.stderr, full.stderr[-3000:]
        # Chroma needs to write even to read (it compacts its log first): while the disk is full,
        # reads fail too - with the same clear message, never a traceback
        status = run_cli("status", "--json", env=env, timeout=120)
        assert status.returncode == 0 or ("is full" in status.stderr and "Traceback" not in status.stderr), status.stderr
        filler.unlink()
        again = run_cli("index", str(first), str(second), env=env, timeout=300)
        assert again.returncode == 0, again.stderr[-2000:]
        status = run_cli("status", "--json", env=env, timeout=120)
        assert {d["doc_id"] for d in json.loads(status.stdout)["docs"]} >= {"first0", "first1"}
        clean_env = {"RAG_MODEL_DIR": str(model_dir), "RAG_DATA_DIR": str(tmp_path / "clean")}
        assert run_cli("index", str(first), str(second), env=clean_env, timeout=300).returncode == 0
        settings = Settings.load(data_dir=disk / "data", model_dir=model_dir)
        got = _snapshot(components.get_store(settings))
        want = _snapshot(components.get_store(Settings.load(data_dir=tmp_path / "clean", model_dir=model_dir)))
        assert got == want and len(got["docs"]) == len(TOPICS)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
