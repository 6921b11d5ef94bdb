"""What keeping BM25 up to date costs on an indexed store: a full rebuild against the segment update.

    $ python -m eval.lexical_bench --data-dir a-copy-of-a-data-dir   # it adds one document

Times a rebuild of the side index from every chunk in Chroma (what every index run did before the
index was kept in segments), loading it, and the update after indexing one new document.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.lexical_bench", description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="an indexed data dir (one document is added to it)")
    p.add_argument("--model-dir", type=Path, help="converted-model cache root (default: the settings')")
    args = p.parse_args(argv)
    import index.pipeline as pipeline
    from index.lexical import LexicalIndex
    from rag import components
    from rag.settings import Settings

    over = {"model_dir": args.model_dir} if args.model_dir else {}
    ix = components.get_indexer(Settings.load(data_dir=args.data_dir, mode="extractive", **over))
    t = time.perf_counter()
    lex = ix.lexical(rebuild=True)
    print(f"rebuild from every chunk: {time.perf_counter() - t:.2f} s ({lex.size} chunks, {len(lex.segments)} segment)")
    t = time.perf_counter()
    LexicalIndex.load(ix.store.data_dir / "bm25" / ix.store.name)
    print(f"load: {time.perf_counter() - t:.2f} s")
    took: dict[str, float] = {}
    real = pipeline.Indexer.lexical

    def timed(self, rebuild: bool = False):
        t = time.perf_counter()
        out = real(self, rebuild)
        took["lexical"] = time.perf_counter() - t
        return out

    pipeline.Indexer.lexical = timed
    with tempfile.TemporaryDirectory() as folder:
        doc = Path(folder) / f"new-{time.time_ns()}.txt"
        doc.write_text("The harbour authority of Porto Velho reported 1,204 ship calls in 2025. "
                       "Its director expects more next year.", encoding="utf-8")
        t = time.perf_counter()
        report = ix.index_paths([doc], remove_missing=False)
        total = time.perf_counter() - t
    print(f"add one document: index call {total:.2f} s, of which the BM25 update {took['lexical']:.3f} s "
          f"({report.counts()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
