"""Gold questions for evaluation: loading and validation of JSON Lines gold files.

One question per line::

    {"id": "q001", "lang": "en", "question": "Who advises AIP?", "answers": [["Nvidia"]],
     "sources": ["001_ef270eff479935e8"], "answerable": true, "kind": "lookup"}

* ``answers``: alias groups; an answer is correct when every group is matched by at least one of
  its aliases (see :mod:`eval.match`). Empty for unanswerable questions.
* ``sources``: every document id (file name without extension) that holds the answer; for a
  ``multihop`` item, every document that holds one of the hops. Empty for unanswerable questions.
* ``answerable``: false means the right output is an abstention.
* ``kind`` (optional, free label; ``"unspecified"`` when missing): lookup, number, list,
  crosslingual, multihop, conflict, unanswerable. ``subkind`` (optional, free label): a finer one
  ("near_miss", "absent_article"); reports break metrics down by it when any question has one.
* ``conflict`` (optional): alias groups of a competing figure, found in another source, that a
  good answer should also surface. ``notes`` (optional): free text for humans.

:func:`load_gold` checks the whole file before returning anything, so an evaluation run never
starts on a half-valid file; all problems are reported together in one :class:`GoldFileError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.match import normalize
from rag.errors import GoldFileError

__all__ = ["GoldItem", "load_gold", "benchmark", "GOLD_DIR", "BENCH_DIR", "DEFAULT_GOLD", "REQUIRED_FIELDS", "OPTIONAL_FIELDS"]

GOLD_DIR = Path(__file__).resolve().parent / "gold"
DEFAULT_GOLD = GOLD_DIR / "aip.jsonl"

REQUIRED_FIELDS = ("id", "lang", "question", "answers", "sources", "answerable")
OPTIONAL_FIELDS = ("kind", "subkind", "conflict", "notes", "fold")
BENCH_DIR = Path(__file__).resolve().parent / "benchmarks"
_ALLOWED = set(REQUIRED_FIELDS) | set(OPTIONAL_FIELDS)
_LANG = re.compile(r"[a-z]{2}")
_MAX_LISTED = 50


@dataclass(frozen=True)
class GoldItem:
    """One gold question. Hashable by ``id`` (ids are unique within a file)."""

    id: str
    lang: str
    question: str
    answers: list[list[str]]
    sources: list[str]
    answerable: bool
    kind: str = "unspecified"
    conflict: list[list[str]] = field(default_factory=list)
    notes: str = ""
    fold: int | None = None  # cross-validation fold: all questions on one article share it
    subkind: str = ""  # a finer kind, for the report's breakdown ("near_miss", "absent_article", ...)

    def __hash__(self) -> int:
        return hash(self.id)


class _Problems:
    def __init__(self, path: str) -> None:
        self.path = path
        self.items: list[tuple[int, str, str]] = []

    def add(self, line: int, name: str, reason: str) -> None:
        self.items.append((line, name, reason))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        line, name, reason = self.items[0]
        err = GoldFileError(self.path, line, name, reason)
        if len(self.items) > 1:
            shown = [f"{self.path}:{ln}: field '{fn}': {why}" for ln, fn, why in self.items[:_MAX_LISTED]]
            if len(self.items) > _MAX_LISTED:
                shown.append(f"... and {len(self.items) - _MAX_LISTED} more")
            shown.append(f"({len(self.items)} problems in {self.path}; fix them all and run again)")
            err.args = ("\n".join(shown),)
        raise err


def _check_groups(value: Any, line: int, name: str, problems: _Problems) -> list[list[str]] | None:
    """Validate a list of alias groups; returns it (copied) or None when malformed."""
    if not isinstance(value, list):
        problems.add(line, name, f"must be a list of alias groups (lists of strings), got {_kind(value)}")
        return None
    ok = True
    groups: list[list[str]] = []
    for i, group in enumerate(value):
        if not isinstance(group, list) or not group:
            problems.add(line, name, f"group {i} must be a non-empty list of strings, got {json.dumps(group)}")
            ok = False
            continue
        for alias in group:
            if not isinstance(alias, str) or not alias.strip():
                problems.add(line, name, f"group {i} has an alias that is not a non-empty string: "
                             f"{json.dumps(alias)}")
                ok = False
            elif not normalize(alias):
                problems.add(line, name, f"group {i} alias {json.dumps(alias)} has no letters or digits, "
                             "so it can never match")
                ok = False
        groups.append(list(group))
    return groups if ok else None


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _check_line(obj: Any, line: int, problems: _Problems, seen_ids: dict[str, int],
                known_doc_ids: set[str] | None) -> GoldItem | None:
    before = len(problems.items)
    if not isinstance(obj, dict):
        problems.add(line, "<line>", f"expected a JSON object {{...}}, got {_kind(obj)}")
        return None

    for key in obj:
        if key not in _ALLOWED:
            close = difflib.get_close_matches(key, sorted(_ALLOWED), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            problems.add(line, key, f"unknown field; {hint}allowed fields: {', '.join(sorted(_ALLOWED))}")
    for key in REQUIRED_FIELDS:
        if key not in obj:
            problems.add(line, key, "missing required field")

    item_id = obj.get("id")
    if "id" in obj:
        if not isinstance(item_id, str) or not item_id.strip():
            problems.add(line, "id", f"must be a non-empty string, got {json.dumps(item_id)}")
        elif item_id in seen_ids:
            problems.add(line, "id", f"duplicate id '{item_id}' (first used on line {seen_ids[item_id]})")
        else:
            seen_ids[item_id] = line

    lang = obj.get("lang")
    if "lang" in obj and not (isinstance(lang, str) and _LANG.fullmatch(lang)):
        problems.add(line, "lang", f"must be a two-letter lowercase language code such as en, pt, es, de; "
                     f"got {json.dumps(lang)}")

    question = obj.get("question")
    if "question" in obj and not (isinstance(question, str) and question.strip()):
        problems.add(line, "question", f"must be a non-empty string, got {json.dumps(question)}")

    answers = _check_groups(obj["answers"], line, "answers", problems) if "answers" in obj else None

    sources = obj.get("sources")
    if "sources" in obj:
        if not isinstance(sources, list):
            problems.add(line, "sources", f"must be a list of document ids, got {_kind(sources)}")
        else:
            for doc in sources:
                if not isinstance(doc, str) or not doc.strip():
                    problems.add(line, "sources", f"document id must be a non-empty string, got {json.dumps(doc)}")
                elif known_doc_ids is not None and doc not in known_doc_ids:
                    close = difflib.get_close_matches(doc, sorted(known_doc_ids), n=1)
                    hint = f"did you mean '{close[0]}'? " if close else ""
                    known = ", ".join(sorted(known_doc_ids)[:10]) + (" ..." if len(known_doc_ids) > 10 else "")
                    problems.add(line, "sources", f"unknown document id '{doc}'; {hint}known ids "
                                 f"(file names without extension in the corpus): {known or 'none'}")
            dupes = sorted({d for d in sources if isinstance(d, str) and sources.count(d) > 1})
            if dupes:
                problems.add(line, "sources", f"document id listed twice: {', '.join(dupes)}")

    answerable = obj.get("answerable")
    if "answerable" in obj and not isinstance(answerable, bool):
        problems.add(line, "answerable", f"must be true or false, got {json.dumps(answerable)}")

    kind = obj.get("kind", "unspecified")
    if not (isinstance(kind, str) and kind.strip()):
        problems.add(line, "kind", f"must be a non-empty string, got {json.dumps(kind)}")

    conflict: list[list[str]] | None = []
    if "conflict" in obj:
        conflict = _check_groups(obj["conflict"], line, "conflict", problems)

    notes = obj.get("notes", "")
    if not isinstance(notes, str):
        problems.add(line, "notes", f"must be a string, got {_kind(notes)}")
    subkind = obj.get("subkind", "")
    if not isinstance(subkind, str):
        problems.add(line, "subkind", f"must be a string, got {_kind(subkind)}")
    fold = obj.get("fold")
    if fold is not None and (isinstance(fold, bool) or not isinstance(fold, int) or fold < 0):
        problems.add(line, "fold", f"must be a whole number >= 0, got {json.dumps(fold)}")

    # Consistency, only when the fields themselves are well-formed.
    if isinstance(answerable, bool):
        if answerable:
            if answers is not None and not answers:
                problems.add(line, "answers", "answerable is true but answers is empty; "
                             "give at least one alias group, or set answerable to false")
            if isinstance(sources, list) and not sources:
                problems.add(line, "sources", "answerable is true but sources is empty; "
                             "list every document that holds the answer")
            if kind == "unanswerable":
                problems.add(line, "answerable", "kind is 'unanswerable' but answerable is true")
        else:
            if answers:
                problems.add(line, "answers", "answerable is false, so answers must be empty "
                             "(the right output is an abstention)")
            if isinstance(sources, list) and sources:
                problems.add(line, "sources", "answerable is false, so sources must be empty")
            if conflict:
                problems.add(line, "conflict", "answerable is false, so there is no conflict to surface")

    if len(problems.items) > before:
        return None
    assert answers is not None and conflict is not None
    return GoldItem(id=item_id, lang=lang, question=question, answers=answers, sources=list(sources),
                    answerable=answerable, kind=kind, conflict=conflict, notes=notes, fold=fold,
                    subkind=subkind)


def load_gold(path: str | Path, known_doc_ids: set[str] | None = None) -> list[GoldItem]:
    """Load and validate a gold file; raise one :class:`GoldFileError` listing every problem.

    ``known_doc_ids`` (document ids of the indexed corpus), when given, makes unknown ``sources``
    an error. Blank lines are skipped; line numbers in errors are physical, 1-based lines.
    The error's ``line``/``field``/``reason`` attributes describe the first problem.
    """
    spath = str(path)
    problems = _Problems(spath)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise GoldFileError(spath, 0, "<file>", f"cannot read the gold file: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GoldFileError(spath, raw[: exc.start].count(b"\n") + 1, "<file>",
                            f"not valid UTF-8 (byte {exc.start}); save the file as UTF-8") from exc

    items: list[GoldItem] = []
    seen_ids: dict[str, int] = {}
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.add(line_no, "<json>", f"invalid JSON at column {exc.colno}: {exc.msg}")
            continue
        item = _check_line(obj, line_no, problems, seen_ids, known_doc_ids)
        if item is not None:
            items.append(item)

    if not items and not problems.items:
        problems.add(0, "<file>", "the file holds no questions (one JSON object per line expected)")
    problems.raise_if_any()
    return items


@dataclass(frozen=True)
class Benchmark:
    """A benchmark shipped in ``eval/benchmarks/<name>/``: its gold file and its corpus folder."""

    name: str
    gold: Path
    corpus: Path

    def subkinds(self) -> dict[str, str]:
        """Question id -> ``subkind`` from the benchmark's ``meta.jsonl`` (none: {}), e.g. xquad-dev's
        near-miss and absent-article unanswerable questions, for the report's breakdown (the gold
        file stays as shipped: its checksum ties it to the ranker's per-fold weights)."""
        path = self.gold.with_name("meta.jsonl")
        if not path.is_file():
            return {}
        out: dict[str, str] = {}
        for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
                out[obj["id"]] = str(obj.get("subkind", ""))
            except (ValueError, KeyError, TypeError) as exc:
                raise GoldFileError(str(path), n, "subkind", f"not a JSON object with an id ({exc})") from exc
        return out


def with_subkinds(items: list[GoldItem], subkinds: dict[str, str]) -> list[GoldItem]:
    """Items with their ``subkind`` from ``subkinds`` where the gold line gave none."""
    return [i if i.subkind or i.id not in subkinds else dataclasses.replace(i, subkind=subkinds[i.id]) for i in items]


def benchmark(name: str) -> Benchmark:
    """The shipped benchmark ``name`` (e.g. ``xquad-dev``); a clear error naming the ones there are."""
    root = BENCH_DIR / name
    if not (root / "gold.jsonl").is_file():
        have = sorted(p.name for p in BENCH_DIR.iterdir() if (p / "gold.jsonl").is_file()) if BENCH_DIR.is_dir() else []
        raise GoldFileError(str(root / "gold.jsonl"), 0, "<file>",
                            f"no benchmark named {name!r}; shipped benchmarks: {', '.join(have) or 'none'}")
    return Benchmark(name, root / "gold.jsonl", root / "corpus")
