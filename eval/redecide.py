"""Re-decide the withheld model answers of an LLM run with the chain's current agreement rule,
without the model: the run recorded each draft, and the evidence and context it was checked
against are rebuilt exactly as the chain builds them (same store, same cross-fitted ranker).

    python -m eval.redecide runs/llm-run [more runs ...] [--bench xquad-dev]

Only rows withheld because "the model's answer is backed by another passage" are re-decided
(``CitedQueryEngine.agreeing``); every other row keeps its outcome. Prints accuracy overall and
per kind, before and after, and what changed. A change to the rule is measured this way in
seconds instead of re-asking the model (~20 s a question here).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
from pathlib import Path

WITHHELD = "another passage"


def redecide(run: Path, bench: str = "xquad-dev") -> dict:
    from eval.calibrate import fold_of
    from eval.gold import benchmark, load_gold
    from eval.match import answer_correct
    from rag.assistant import Assistant
    from rag.context import build_context
    from rag.settings import Settings
    from rag.verify import Verdict

    b = benchmark(bench)
    gold = {i.id: i for i in load_gold(b.gold)}
    meta = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["meta"]
    used = meta["settings"]  # the run's own store, models and context budget
    settings = dataclasses.replace(Settings.load(data_dir=Path(used["data_dir"]), model_dir=Path(used["model_dir"])),
                                   mode="extractive", llm_context_tokens=used["llm_context_tokens"])
    engines: dict[int, object] = {}
    before, after = collections.defaultdict(list), collections.defaultdict(list)
    changed: collections.Counter = collections.Counter()
    for line in (run / "results.jsonl").read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        ok = r["scores"]["correct"]
        before["all"].append(ok)
        before[r["kind"]].append(ok)
        if r.get("withheld") or WITHHELD in (r.get("verification") or ""):  # the phrase: runs before the field
            item = gold[r["id"]]
            fold = fold_of(item) if meta.get("cross_fitted") else -1
            if fold not in engines:
                engines[fold] = Assistant(dataclasses.replace(settings, ranker_holdout=fold)).engine
            engine = engines[fold]
            evidence = next(e.payload for e in engine.stream(item.question, mode="extractive") if e.type == "evidence")
            context = build_context(evidence, settings.llm_context_tokens)
            verdict = engine.agreeing(r["draft"], Verdict(True, "", []), context.sentences, evidence,
                                      r["question_language"], item.question)
            if verdict.ok:  # shown now: judged as the run judges an answer
                ok = bool(item.answerable and answer_correct(r["draft"], item.answers))
            changed[("shown" if verdict.ok else "still withheld", r["kind"], "correct" if ok else "wrong")] += 1
        after["all"].append(ok)
        after[r["kind"]].append(ok)
    share = lambda d: {k: round(sum(v) / len(v), 3) for k, v in sorted(d.items())}  # noqa: E731
    return {"run": str(run), "before": share(before), "after": share(after),
            "changed": {" / ".join(k): n for k, n in sorted(changed.items())}}


def main(argv: list[str] | None = None) -> int:
    from rag.defaults import apply_process_defaults

    apply_process_defaults()
    ap = argparse.ArgumentParser(prog="python -m eval.redecide", description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="--out directories of `python -m eval run --mode llm`")
    ap.add_argument("--bench", default="xquad-dev", help="the benchmark the runs asked (default xquad-dev)")
    args = ap.parse_args(argv)
    for run in args.runs:
        print(json.dumps(redecide(run, args.bench), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
