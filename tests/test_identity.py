"""Document identity (issue 15, row 1): two files never share an id, re-indexing changes nothing,
a moved file is a remove plus an add, and stores with the old stem ids are migrated per document.
Real parts: the converted model, Chroma on disk, the `rag` CLI in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli

from index.docids import assign_ids

TEXT_A = "The lighthouse keeper of Porto Santo logged eleven storms in 1931."
TEXT_B = "The orchard in Vila Real grows forty kinds of pear, most of them rare."
TEXT_C = "Der Bahnhof von Lübeck wurde im Jahr 1908 eröffnet und hat neun Gleise."


def _tree(root: Path) -> None:
    (root / "a").mkdir(parents=True)
    (root / "b" / "sub").mkdir(parents=True)
    (root / "a" / "notes.txt").write_text(TEXT_A, encoding="utf-8")
    (root / "b" / "notes.txt").write_text(TEXT_B, encoding="utf-8")
    (root / "b" / "sub" / "notes.md").write_text(TEXT_C, encoding="utf-8")


def _index(tmp_path: Path, model_dir: Path, *paths: str) -> dict:
    out = run_cli("--data-dir", str(tmp_path / "data"), "index", "--json", *paths,
                  env={"RAG_MODEL_DIR": str(model_dir)})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _stored(tmp_path: Path, model_dir: Path) -> dict[str, str]:
    out = run_cli("--data-dir", str(tmp_path / "data"), "status", "--json", env={"RAG_MODEL_DIR": str(model_dir)})
    assert out.returncode == 0, out.stderr
    return {d["doc_id"]: Path(d["source"]).resolve().relative_to(tmp_path.resolve()).as_posix()
            for d in json.loads(out.stdout)["docs"]}


def test_id_rule_is_relative_path_and_never_collides(tmp_path):
    _tree(tmp_path)
    (tmp_path / "a" / "notes.pdf").write_bytes(b"%PDF-1.4")
    files = [(tmp_path / "a", tmp_path / "a" / "notes.txt"), (tmp_path / "a", tmp_path / "a" / "notes.pdf"),
             (tmp_path / "b", tmp_path / "b" / "notes.txt"), (tmp_path / "b", tmp_path / "b" / "sub" / "notes.md")]
    ids = {p.relative_to(tmp_path).as_posix(): a.doc_id for p, a in assign_ids(files, {}, (".txt", ".pdf", ".md")).items()}
    assert ids == {"a/notes.txt": "notes.txt", "a/notes.pdf": "notes.pdf", "b/notes.txt": "notes",
                   "b/sub/notes.md": "sub/notes"}
    both = assign_ids(files[:1] + files[2:3], {}, (".txt",))  # a/ and b/ with notes.txt in both (the PDF not counted)
    assert [a.doc_id for a in both.values()] == ["a/notes", "b/notes"]
    # a name with control characters and an RTL mark gives a clean id
    odd = tmp_path / "c" / "re\u202eport\x07 1.txt"
    odd.parent.mkdir()
    odd.write_text(TEXT_A)
    assert assign_ids([(odd.parent, odd)], {})[odd].doc_id == "re_port_1"
    # an id committed for another file that still exists is never taken over
    taken = assign_ids([(tmp_path / "b", tmp_path / "b" / "notes.txt")], {"notes": str(tmp_path / "a" / "notes.txt")})
    assert taken[tmp_path / "b" / "notes.txt"].doc_id == "b/notes"
    assert "belongs to another file" in taken[tmp_path / "b" / "notes.txt"].note


def test_two_folders_with_the_same_file_name_keep_both(tmp_path, model_dir):
    _tree(tmp_path)
    first = _index(tmp_path, model_dir, str(tmp_path / "a"), str(tmp_path / "b"))
    assert first["counts"] == {"added": 3}, first
    stored = _stored(tmp_path, model_dir)
    assert stored == {"a/notes": "a/notes.txt", "b/notes": "b/notes.txt", "sub/notes": "b/sub/notes.md"}
    again = _index(tmp_path, model_dir, str(tmp_path / "a"), str(tmp_path / "b"))
    assert again["counts"] == {"unchanged": 3} and again["chunks_embedded"] == 0
    # later runs on one folder never take over the other's id
    alone = _index(tmp_path, model_dir, str(tmp_path / "b" / "notes.txt"))
    assert alone["counts"] == {"unchanged": 1}, alone
    assert _stored(tmp_path, model_dir) == stored


def test_a_file_beside_its_pdf_twin_keeps_both(tmp_path, model_dir):
    from test_index import _minimal_pdf

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text(TEXT_A)
    first = _index(tmp_path, model_dir, str(tmp_path / "d"))
    assert [f["doc_id"] for f in first["files"]] == ["notes"]
    (tmp_path / "d" / "notes.pdf").write_bytes(_minimal_pdf("Acme Robotics was founded in Lisbon."))
    second = _index(tmp_path, model_dir, str(tmp_path / "d"))
    by_status = {(f["status"], f["doc_id"]) for f in second["files"]}
    # the committed notes.txt keeps its id; the new PDF with the same stem gets its extension
    assert by_status == {("unchanged", "notes"), ("added", "notes.pdf")}, second
    assert set(_stored(tmp_path, model_dir)) == {"notes", "notes.pdf"}


def test_moving_a_file_is_a_remove_plus_an_add(tmp_path, model_dir):
    _tree(tmp_path)
    _index(tmp_path, model_dir, str(tmp_path / "b"))
    (tmp_path / "b" / "sub" / "notes.md").rename(tmp_path / "b" / "moved.md")
    report = _index(tmp_path, model_dir, str(tmp_path / "b"))
    assert {(f["status"], f["doc_id"]) for f in report["files"]} == {
        ("removed", "sub/notes"), ("added", "moved"), ("unchanged", "notes")}
    assert set(_stored(tmp_path, model_dir)) == {"notes", "moved"}


def test_python_api_keeps_both_documents(tmp_path, make_settings):
    from rag import Assistant

    _tree(tmp_path)
    qa = Assistant(make_settings())
    qa.index([tmp_path / "a"])
    report = qa.index([tmp_path / "b"], remove_missing=False)
    ids = {d.doc_id: Path(d.source).parent.name for d in qa.documents()}
    assert ids == {"notes": "a", "b/notes": "b", "sub/notes": "sub"}, report.to_dict()
    assert any("belongs to another file" in r.reason for r in report.results)
    answer = qa.ask("How many kinds of pear grow in the orchard?")
    assert answer.citations and answer.citations[0].doc_id == "b/notes"
    assert answer.citations[0].source.endswith("b/notes.txt")
