"""eval.gold: the project's gold set is well-formed and true to the corpus; broken files are refused."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest

from eval.gold import DEFAULT_GOLD, GoldItem, load_gold
from eval.match import answer_correct, matched_groups
from rag.errors import GoldFileError

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
GOLD = ROOT / "eval" / "gold" / "aip.jsonl"
# The corpus is fixed: language of each document by file prefix.
DOC_LANG = {"000": "pt", "001": "en", "002": "es", "003": "de", "004": "en"}


@pytest.fixture(scope="module")
def docs() -> dict[str, str]:
    found = {p.stem: p.read_text(encoding="utf-8") for p in sorted(CORPUS.glob("*.txt"))}
    assert {d[:3] for d in found} == set(DOC_LANG), f"unexpected corpus files in {CORPUS}: {sorted(found)}"
    return found


@pytest.fixture(scope="module")
def gold(docs: dict[str, str]) -> list[GoldItem]:
    return load_gold(GOLD, known_doc_ids=set(docs))


def _crosslingual(item: GoldItem) -> bool:
    return item.answerable and all(DOC_LANG[s[:3]] != item.lang for s in item.sources)


# ------------------------------------------------------------------ the real gold set

def test_default_path_is_the_project_gold() -> None:
    assert DEFAULT_GOLD.resolve() == GOLD.resolve()


def test_size_languages_and_kinds(gold: list[GoldItem]) -> None:
    assert len(gold) >= 60
    langs = Counter(i.lang for i in gold)
    assert set(langs) == {"en", "pt", "es", "de"}
    assert min(langs.values()) >= 12, langs  # roughly balanced
    kinds = Counter(i.kind for i in gold)
    assert set(kinds) <= {"lookup", "number", "list", "crosslingual", "multihop", "conflict", "unanswerable"}
    for kind in ("lookup", "number", "list", "multihop"):
        assert kinds[kind] >= 3, kinds


def test_ids_sequential(gold: list[GoldItem]) -> None:
    assert [i.id for i in gold] == [f"q{n:03d}" for n in range(1, len(gold) + 1)]


def test_crosslingual(gold: list[GoldItem]) -> None:
    labelled = [i for i in gold if i.kind == "crosslingual"]
    not_really = [i.id for i in labelled if not _crosslingual(i)]
    assert not not_really, f"labelled crosslingual but a source is in the question's language: {not_really}"
    assert len(labelled) >= 15
    assert sum(_crosslingual(i) for i in gold) >= 15
    # cross-lingual questions are asked in every language
    assert {i.lang for i in labelled} == {"en", "pt", "es", "de"}


def test_unanswerable(gold: list[GoldItem]) -> None:
    unanswerable = [i for i in gold if not i.answerable]
    assert len(unanswerable) >= 12
    assert len({i.lang for i in unanswerable}) >= 3
    for item in unanswerable:
        assert item.kind == "unanswerable" and not item.answers and not item.sources and not item.conflict


def test_answers_are_in_their_sources(gold: list[GoldItem], docs: dict[str, str]) -> None:
    problems = []
    for item in gold:
        if not item.answerable:
            continue
        if item.kind == "multihop":
            joined = "\n".join(docs[s] for s in item.sources)
            if not answer_correct(joined, item.answers):
                problems.append(f"{item.id}: groups {matched_groups(joined, item.answers)} in the joined sources")
        else:
            for s in item.sources:
                if not answer_correct(docs[s], item.answers):
                    problems.append(f"{item.id}: source {s} gives {matched_groups(docs[s], item.answers)}")
    assert not problems, "\n".join(problems)


def test_conflicts(gold: list[GoldItem], docs: dict[str, str]) -> None:
    conflicts = [i for i in gold if i.conflict]
    assert conflicts and all(i.kind == "conflict" for i in conflicts)
    assert {i.kind for i in gold if i.kind == "conflict"} and all(i.conflict for i in gold if i.kind == "conflict")
    for item in conflicts:
        # the competing figure is in the corpus, but in none of the item's own sources
        holders = [d for d, text in docs.items() if answer_correct(text, item.conflict)]
        assert holders, item.id
        assert not set(holders) & set(item.sources), item.id
        # and the two figures do not match each other's aliases
        for group in item.conflict:
            assert not any(answer_correct(alias, item.answers) for alias in group), item.id


def test_known_conflicting_figures(gold: list[GoldItem]) -> None:
    """The 100 billion / 1 trillion and 30 billion / 300,000 million disagreements are both covered."""
    texts = {(i.answers[0][0], i.conflict[0][0]) for i in gold if i.conflict}
    assert ("100 billion", "1 trillion") in texts
    assert ("30 billion", "300 billion") in texts


# ------------------------------------------------------------------ malformed files

GOOD = {"id": "q1", "lang": "en", "question": "Who advises AIP?", "answers": [["Nvidia"]],
        "sources": ["001_ef270eff479935e8"], "answerable": True, "kind": "lookup"}
UNANSWERABLE = {"id": "q2", "lang": "de", "question": "Wo ist der Sitz?", "answers": [], "sources": [],
                "answerable": False, "kind": "unanswerable"}
KNOWN = {"000_df219a4969b437e4", "001_ef270eff479935e8", "002_ecd3f22a6ca37239",
         "003_f723864ab8c364a0", "004_aa7a5d420b0d2dd0"}


def _with(**changes: object) -> str:
    obj = {**GOOD, "id": "q9", **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not _DROP}, ensure_ascii=False)


_DROP = object()


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "gold.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


OK1, OK2 = json.dumps(GOOD), json.dumps(UNANSWERABLE)

BAD = {
    "bad json": ([OK1, '{"id": "q9", "lang": "en",'], 2, "<json>"),
    "not an object": ([OK1, OK2, "[1, 2]"], 3, "<line>"),
    "missing question": ([OK1, _with(question=_DROP)], 2, "question"),
    "missing answerable": ([_with(answerable=_DROP), OK1], 1, "answerable"),
    "answerable not bool": ([OK1, _with(answerable="yes")], 2, "answerable"),
    "answerable as int": ([OK1, _with(answerable=1)], 2, "answerable"),
    "answers not list": ([OK1, _with(answers="Nvidia")], 2, "answers"),
    "answers flat list": ([OK1, _with(answers=["Nvidia"])], 2, "answers"),
    "empty alias": ([OK1, _with(answers=[["Nvidia", " "]])], 2, "answers"),
    "punctuation alias": ([OK1, _with(answers=[["?!"]])], 2, "answers"),
    "empty group": ([OK1, _with(answers=[["Nvidia"], []])], 2, "answers"),
    "sources not list": ([OK1, _with(sources="001_ef270eff479935e8")], 2, "sources"),
    "unknown doc id": ([OK1, OK2, _with(sources=["001_nope"])], 3, "sources"),
    "answerable with empty answers": ([OK1, _with(answers=[])], 2, "answers"),
    "answerable with empty sources": ([OK1, _with(sources=[])], 2, "sources"),
    "unanswerable with answers": ([OK1, json.dumps({**UNANSWERABLE, "answers": [["x"]]})], 2, "answers"),
    "unanswerable kind but answerable": ([OK1, _with(kind="unanswerable")], 2, "answerable"),
    "duplicate id": ([OK1, OK2, json.dumps(GOOD)], 3, "id"),
    "empty id": ([OK1, _with(id="")], 2, "id"),
    "typo field": ([OK1, _with(answer=[["Nvidia"]])], 2, "answer"),
    "bad lang": ([OK1, _with(lang="english")], 2, "lang"),
    "empty question": ([OK1, _with(question="   ")], 2, "question"),
    "kind not str": ([OK1, _with(kind=3)], 2, "kind"),
    "bad conflict": ([OK1, _with(conflict=[["1 trillion"], "x"])], 2, "conflict"),
    "error after blank lines": ([OK1, "", "   ", _with(lang="EN")], 4, "lang"),
}


@pytest.mark.parametrize(("lines", "line", "field"), list(BAD.values()), ids=list(BAD))
def test_malformed(tmp_path: Path, lines: list[str], line: int, field: str) -> None:
    path = _write(tmp_path, lines)
    with pytest.raises(GoldFileError) as info:
        load_gold(path, known_doc_ids=KNOWN)
    err = info.value
    assert (err.line, err.field) == (line, field)
    assert f"{path}:{line}: field '{field}'" in str(err)
    assert err.path == str(path)


def test_unknown_doc_id_names_the_id_and_known_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, [_with(sources=["001_ef270eff479935e9"])])
    with pytest.raises(GoldFileError) as info:
        load_gold(path, known_doc_ids=KNOWN)
    msg = str(info.value)
    assert "001_ef270eff479935e9" in msg and "did you mean '001_ef270eff479935e8'" in msg
    assert "004_aa7a5d420b0d2dd0" in msg


def test_unknown_doc_ids_not_checked_without_known_ids(tmp_path: Path) -> None:
    path = _write(tmp_path, [_with(sources=["anything"])])
    assert load_gold(path)[0].sources == ["anything"]


def test_typo_field_suggests_the_right_name(tmp_path: Path) -> None:
    path = _write(tmp_path, [_with(answer=[["Nvidia"]])])
    with pytest.raises(GoldFileError, match="did you mean 'answers'"):
        load_gold(path)


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    path = _write(tmp_path, [OK1, _with(lang="xx1"), OK2, "{oops", _with(id="q7", answerable="no")])
    with pytest.raises(GoldFileError) as info:
        load_gold(path, known_doc_ids=KNOWN)
    err, msg = info.value, str(info.value)
    assert (err.line, err.field) == (2, "lang")  # attributes describe the first problem
    for needle in (f"{path}:2: field 'lang'", f"{path}:4: field '<json>'", f"{path}:5: field 'answerable'"):
        assert needle in msg
    assert "3 problems" in msg


def test_blank_lines_and_optional_fields(tmp_path: Path) -> None:
    no_kind = {k: v for k, v in GOOD.items() if k != "kind"} | {"id": "q3", "notes": "n", "conflict": [["1 trillion"]]}
    path = _write(tmp_path, ["", OK1, "   ", "", OK2, json.dumps(no_kind), ""])
    items = load_gold(path, known_doc_ids=KNOWN)
    assert [i.id for i in items] == ["q1", "q2", "q3"]
    assert items[2].kind == "unspecified" and items[2].notes == "n" and items[2].conflict == [["1 trillion"]]
    assert items[0].conflict == [] and items[1].answerable is False


def test_other_language_codes_accepted(tmp_path: Path) -> None:
    assert load_gold(_write(tmp_path, [_with(lang="fr")]))[0].lang == "fr"


def test_missing_empty_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(GoldFileError, match="cannot read"):
        load_gold(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(GoldFileError, match="no questions"):
        load_gold(empty)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes((OK1 + "\n" + _with(question="Qual é?")).encode("latin-1"))
    with pytest.raises(GoldFileError) as info:
        load_gold(latin)
    assert info.value.line == 2


def test_nothing_returned_from_a_partly_broken_file(tmp_path: Path) -> None:
    path = _write(tmp_path, [OK1, OK2, "not json"])
    with pytest.raises(GoldFileError):
        load_gold(path)


def test_gold_item_is_frozen_and_hashable(gold: list[GoldItem]) -> None:
    item = gold[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.id = "x"  # type: ignore[misc]
    assert len(set(gold)) == len(gold)
