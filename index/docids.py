"""Document ids that cannot collide: a readable path relative to the indexed root.

    >>> ids = assign_ids([(Path("a"), Path("a/notes.txt")), (Path("b"), Path("b/notes.txt"))], {})
    >>> [i.doc_id for i in ids.values()]
    ['a/notes', 'b/notes']

The rule, a function of the files and the roots given (so a re-index of the same tree changes
nothing, on any machine):

* the id is the file's POSIX path relative to its root, without the extension
  (``corpus/001_x.txt`` indexed as ``corpus`` -> ``001_x``; ``docs/sub/a.md`` -> ``sub/a``);
  a file given on its own is relative to its folder (``notes``);
* two supported files in one folder with the same stem (``notes.txt``, ``notes.pdf``) both keep
  their extension (``notes.txt``, ``notes.pdf``);
* two roots of one run that yield the same id (``rag index a/ b/`` with ``notes.txt`` in both) both
  get their root's folder name in front (``a/notes``, ``b/notes``);
* an id already committed for *another* file that still exists is never taken over: the newcomer
  gets its root's name in front (then ``-2``, ``-3``...), and the report says so;
* a file already committed keeps its id, so ids never flip between runs, and stores built with
  the older stem-only ids keep working (those ids are unique too; ``rag index --rebuild`` gives
  every file the id of this rule). A moved file is a new path: a remove plus an add.

Each part is NFC-normalised, and anything but letters, digits, ``.`` ``_`` ``-`` (control
characters, RTL marks, spaces) becomes ``_``: ids are safe in metadata, URLs and terminals, while
the record's ``source`` keeps the real path for citations and the UI.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AssignedId:
    doc_id: str
    note: str = ""  # why the id is not the plain relative path (shown in the report)


def clean(part: str) -> str:
    """One path component made safe for an id."""
    part = unicodedata.normalize("NFC", part)
    return re.sub(r"[^\w.-]+", "_", part).strip("_") or "doc"


def same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


class _Siblings:
    """Stems shared by several supported files in one folder (listed once per folder)."""

    def __init__(self, suffixes: tuple[str, ...]) -> None:
        self.suffixes = suffixes
        self._shared: dict[Path, set[str]] = {}

    def shares_stem(self, path: Path) -> bool:
        folder = path.parent
        if folder not in self._shared:
            try:
                names = [n for n in os.listdir(folder) if Path(n).suffix.lower() in self.suffixes]
            except OSError:
                names = [path.name]
            counts = Counter(clean(Path(n).stem) for n in names)
            self._shared[folder] = {s for s, c in counts.items() if c > 1}
        return clean(path.stem) in self._shared[folder]


def relative_id(root: Path, path: Path, siblings: _Siblings) -> str:
    rel = path.relative_to(root) if root != path and root.is_dir() else Path(path.name)
    last = path.name if siblings.shares_stem(path) else path.stem
    return "/".join([*(clean(p) for p in rel.parts[:-1]), clean(last)])


def root_name(root: Path, path: Path) -> str:
    folder = root if root != path and root.is_dir() else path.parent
    return clean(folder.resolve().name or "root")


def assign_ids(files: list[tuple[Path, Path]], committed: dict[str, str],
               suffixes: tuple[str, ...] = (".txt",)) -> dict[Path, AssignedId]:
    """Ids for ``files`` ((root, path) pairs) given the ``committed`` doc_id -> source records.
    A file already committed keeps its id (ids never flip between runs); new files follow the rule."""
    by_source = {_resolved(src): doc_id for doc_id, src in committed.items()}
    out: dict[Path, AssignedId] = {}
    used: set[str] = set()
    for _, path in files:
        known = by_source.get(_resolved(path))
        if known is not None and known not in used:
            out[path] = AssignedId(known)
            used.add(known)
    siblings = _Siblings(suffixes)
    new = [(root, path) for root, path in files if path not in out]
    base = {path: relative_id(root, path, siblings) for root, path in new}
    roots_of = Counter(base.values())
    for root, path in new:
        wanted, note = base[path], ""
        if roots_of[wanted] > 1:
            wanted = f"{root_name(root, path)}/{wanted}"
            note = f"id '{base[path]}' is shared with a file under another root; indexed as '{wanted}'"
        if wanted in used or _taken(committed.get(wanted), path):
            first, owner = wanted, committed.get(wanted)
            prefix, n = root_name(root, path), 1
            wanted = f"{prefix}/{base[path]}"
            while wanted in used or _taken(committed.get(wanted), path):
                n += 1
                wanted = f"{prefix}/{base[path]}-{n}"
            held = f"document '{first}' ({owner})" if _taken(owner, path) else f"'{first}'"
            note = f"id {held} belongs to another file; indexed as '{wanted}'"
        used.add(wanted)
        out[path] = AssignedId(wanted, note)
    return out


def _resolved(path: str | Path) -> str:
    try:
        return str(Path(path).resolve())
    except OSError:
        return str(path)


def _taken(owner: str | None, path: Path) -> bool:
    return bool(owner) and not same_file(owner, path) and Path(owner).exists()
