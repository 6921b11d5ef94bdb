"""Access (issue 15, row 5) and slow work apart from questions (row 4).

Credentials come from the environment or a file, never argv; with authentication on, only an
admin adds or removes documents; a 20 MB PDF being indexed does not stop questions. Real parts:
``python app.py`` on 127.0.0.1, gradio_client over HTTP, the real model and Chroma on disk."""

from __future__ import annotations

import json
import statistics
import threading
import time
from pathlib import Path

import pytest
from conftest import stop_app
from docfixtures import pdf_from_objects
from test_reliability import _start_app, app_data  # noqa: F401 - the fixture is used below

from rag.auth import load_credentials
from rag.errors import ConfigError
from rag.settings import Settings

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def _users(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "users"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_credentials_from_a_file_and_the_environment(tmp_path):
    path = _users(tmp_path, "# role user password\nreader bob read-me\nadmin alice adm1n pw with spaces\n")
    creds = load_credentials(Settings(auth_file=path), environ={"RAG_READER_PASSWORD": "r2", "RAG_READER_USER": "eve"})
    assert creds.role("bob", "read-me") == "reader" and creds.role("eve", "r2") == "reader"
    assert creds.role("alice", "adm1n pw with spaces") == "admin"
    assert creds.role("alice", "read-me") is None and creds.role("mallory", "read-me") is None
    assert creds.role_for_token("adm1n pw with spaces") == "admin" and creds.role_for_token("r2") == "reader"
    assert creds.role_for_token("nope") is None
    assert creds.is_admin("alice") and not creds.is_admin("bob") and not creds.is_admin(None)
    assert not load_credentials(Settings(), environ={}).enabled  # nothing set: auth off (loopback only)
    assert load_credentials(Settings(), environ={}).is_admin(None)


@pytest.mark.parametrize("text, mode, message", [
    ("reader bob pw\n", 0o644, "chmod 600"),
    ("reader bob same\nadmin alice same\n", 0o600, "equals an admin"),
    ("reader bob x\nadmin bob y\n", 0o600, "defined twice"),
    ("boss bob x\n", 0o600, "line 1"),
])
def test_bad_credentials_are_refused_with_the_fix(tmp_path, text, mode, message):
    with pytest.raises(ConfigError, match=message):
        load_credentials(Settings(auth_file=_users(tmp_path, text, mode)), environ={})


@pytest.mark.slow
def test_password_on_the_command_line_is_refused(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    done = subprocess.run([sys.executable, "app.py", "--auth", "alice:hunter2", "--data-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "visible to every local user" in done.stderr and "RAG_AUTH_FILE" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


@pytest.mark.slow
def test_readers_ask_only_admins_change_documents(app_data, model_dir, tmp_path):  # noqa: F811
    from gradio_client import Client, handle_file

    users = _users(tmp_path, "reader bob read-pw-1\nadmin alice admin-pw-2\n")
    doc = tmp_path / "quorvex.txt"
    doc.write_text("The Quorvex valve was patented in Porto in 1977 by Ana Lobo.")
    proc, url, log = _start_app(app_data, model_dir, env_extra={"RAG_AUTH_FILE": str(users)})
    try:
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert b"read-pw-1" not in cmdline and b"admin-pw-2" not in cmdline  # not in `ps`
        with pytest.raises(Exception):  # noqa: B017 - gradio_client raises its own types
            Client(url, auth=("bob", "admin-pw-2"), verbose=False)
        reader = Client(url, auth=("bob", "read-pw-1"), verbose=False)
        assert "Fink" in reader.predict("Who is the CEO of BlackRock?", api_name="/ask")["text"]
        with pytest.raises(Exception, match="needs an admin login"):
            reader.predict([handle_file(str(doc))], api_name="/upload")
        with pytest.raises(Exception, match="needs an admin login"):
            reader.predict("001_ef270eff479935e8", api_name="/remove")
        assert not list((app_data / "uploads").glob("quorvex*"))
        admin = Client(url, auth=("alice", "admin-pw-2"), verbose=False)
        note = admin.predict([handle_file(str(doc))], api_name="/upload")[1]
        assert "quorvex: added" in note, note
        assert "Ana Lobo" in reader.predict("Who patented the Quorvex valve?", api_name="/ask")["text"]
        assert admin.predict("quorvex", api_name="/remove")[0] == "removed quorvex"
    finally:
        stop_app(proc)
    text = log.read_text(errors="replace")
    assert "read-pw-1" not in text and "admin-pw-2" not in text


def _pdf(pages: list[str], padding_bytes: int) -> bytes:
    """A PDF with a text layer on every page plus one unused binary stream of ``padding_bytes``
    (a stand-in for embedded images: a 20 MB file whose text is a few dozen pages)."""
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in pages:
        lines = [text[i:i + 90] for i in range(0, len(text), 90)]
        stream = ("BT /F1 9 Tf 11 TL 40 760 Td " + " ".join(f"({ln}) Tj T*" for ln in lines) + " ET").encode("latin-1")
        objs.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        objs.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                    b"/Resources << /Font << /F1 3 0 R >> >> >>" % len(objs))  # the content object's number
        kids.append(len(objs))
    objs[1] = b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % k for k in kids) + b"] /Count %d >>" % len(kids)
    blob = bytes((i * 7919) % 251 for i in range(padding_bytes))
    objs.append(b"<< /Length %d >>\nstream\n" % len(blob) + blob + b"\nendstream")
    return pdf_from_objects(objs)


def big_pdf(path: Path, mb: float = 20.0, pages: int = 30) -> Path:
    texts = [" ".join(f"Page {p} of the Lumeira harbour report notes that pier {p}-{k} handled {p * 31 + k} "
                      f"tonnes of cork in week {k}." for k in range(14)) for p in range(pages)]
    head = _pdf(texts, 0)
    path.write_bytes(_pdf(texts, int(mb * 1024 * 1024) - len(head)))
    return path


@pytest.mark.slow
def test_questions_keep_being_answered_while_a_20mb_pdf_is_indexed(app_data, model_dir, tmp_path):  # noqa: F811
    from gradio_client import Client, handle_file

    pdf = big_pdf(tmp_path / "lumeira.pdf")
    assert pdf.stat().st_size >= 20 * 1024 * 1024
    proc, url, _ = _start_app(app_data, model_dir, env_extra={"RAG_MAX_UPLOAD_MB": "25", "RAG_MAX_FILE_MB": "25"})
    lock = threading.Lock()
    done = threading.Event()
    answers: list[tuple[float, float]] = []  # (start, latency)
    errors: list[str] = []
    upload: dict = {}

    def do_upload() -> None:
        upload["start"] = time.perf_counter()
        try:
            upload["note"] = Client(url, verbose=False).predict([handle_file(str(pdf))], api_name="/upload")[1]
        except Exception as exc:  # noqa: BLE001
            upload["note"] = f"error {exc}"
        upload["end"] = time.perf_counter()
        done.set()

    def ask_until_done() -> None:
        client = Client(url, verbose=False)
        while not done.is_set():
            t0 = time.perf_counter()
            try:
                answer = client.predict("Who advises AIP?", api_name="/ask")
                assert answer["citations"], answer
            except Exception as exc:  # noqa: BLE001
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                answers.append((t0, time.perf_counter() - t0))

    try:
        up = threading.Thread(target=do_upload)
        up.start()
        time.sleep(1.0)  # the upload is in its worker
        askers = [threading.Thread(target=ask_until_done) for _ in range(8)]
        for t in askers:
            t.start()
        up.join(900)
        for t in askers:
            t.join(60)
    finally:
        stop_app(proc)
    assert "lumeira: added" in upload.get("note", ""), upload
    during = [lat for start, lat in answers if start < upload["end"]]
    assert not errors, errors[:5]
    assert len(during) >= 16, (len(during), upload)  # answered while the PDF was indexed, not after it
    q = statistics.quantiles(during, n=20)
    result = {"pdf_mb": round(pdf.stat().st_size / 2**20, 1), "upload_and_index_s": round(upload["end"] - upload["start"], 1),
              "questions_during": len(during), "errors": len(errors), "p50_s": round(statistics.median(during), 3),
              "p95_s": round(q[18], 3), "max_s": round(max(during), 3)}
    print("\nINGEST-WHILE-ASKING " + json.dumps(result))
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "ingest_while_asking.json").write_text(json.dumps(result, indent=2))
