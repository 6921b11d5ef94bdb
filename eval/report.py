"""Human-readable outputs of a run: report.md (tables), PNG charts, and the one-screen summary.

    >>> write_report(Path("runs/x"), metrics, rows)     # report.md, accuracy_by_language.png, ...
    >>> print(summary(metrics, Path("runs/x")))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eval.metrics import HEADLINE

CHARTS = ("accuracy_by_language.png", "accuracy_by_kind.png", "latency.png")
BREAKDOWN = ("answer_accuracy", "answer_accuracy_answerable", "mrr", "citation_sentence_precision", "abstention_f1",
             "false_abstention_rate", "language_match")


def fmt(m: dict[str, Any] | None, ci: bool = True) -> str:
    """ "0.812 [0.72, 0.89]" for a metric entry; "n/a" when undefined.

    >>> fmt({"value": 0.8123, "ci95": [0.72, 0.891], "n": 75})
    '0.812 [0.72, 0.89]'
    """
    if not m or m.get("value") is None:
        return "n/a"
    text = f"{m['value']:.3f}"
    if ci and m.get("ci95"):
        text += f" [{m['ci95'][0]:.2f}, {m['ci95'][1]:.2f}]"
    return text


def _systems(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {"full": metrics, **metrics.get("baselines", {})}


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(r) + " |" for r in rows]]


def summary(metrics: dict[str, Any], out: Path | None = None) -> str:
    """The one-screen summary printed at the end of a run."""
    meta, systems = metrics["meta"], _systems(metrics)
    c = metrics["counts"]
    lines = [f"eval run: {meta['questions']} questions ({c['answerable']} answerable), mode {meta['answer_mode']}, "
             f"commit {meta['git']['commit'][:10]}, corpus {meta['corpus']['fingerprint'][:12]}, "
             f"{meta.get('duration_seconds', 0):.0f}s",
             f"answers: {c['correct']} correct, {c['abstained']} abstained ({c['false_abstentions']} on answerable), "
             f"{c['answered_unanswerable']} answered unanswerable, {c['errors']} errors, {c['fallbacks']} fallbacks",
             "", f"{'metric (95% CI)':<30}" + "".join(f"{name:<22}" for name in systems)]
    for key in HEADLINE:
        lines.append(f"{key:<30}" + "".join(f"{fmt(s['overall'].get(key)):<22}" for s in systems.values()))
    lines.append("")
    lines.append("accuracy by language: " + ", ".join(
        f"{lang} {fmt(m.get('answer_accuracy'), ci=False)}" for lang, m in metrics["by_language"].items()))
    lines.append("accuracy by kind: " + ", ".join(
        f"{kind} {fmt(m.get('answer_accuracy'), ci=False)}" for kind, m in metrics["by_kind"].items()))
    lat = metrics["latency"]
    lines.append("latency p50/p95 ms: " + ", ".join(
        f"{stage} {v['p50'] * 1000:.0f}/{v['p95'] * 1000:.0f}" for stage, v in lat.items()))
    if out is not None:
        lines.append(f"outputs: {out}/metrics.json results.jsonl report.md {' '.join(CHARTS)}")
    return "\n".join(lines)


def markdown(metrics: dict[str, Any]) -> str:
    """report.md: headline table (full chain vs baselines), breakdowns, latency, failures."""
    meta, systems = metrics["meta"], _systems(metrics)
    names = list(systems)
    md = [f"# Evaluation run {meta['date']}", "",
          f"- command: `{meta['command']}`",
          f"- gold: `{meta['gold']}` ({meta['questions']} questions, sha256 {meta['gold_sha256'][:12]})",
          f"- answer mode: {meta['answer_mode']}; models: {meta['models']}",
          f"- corpus fingerprint: {meta['corpus']['fingerprint'][:16]} ({meta['corpus']['documents']} documents)",
          f"- git commit: {meta['git']['commit']}{' (dirty)' if meta['git'].get('dirty') else ''}",
          f"- intervals: 95% percentile bootstrap over questions ({meta['resamples']} resamples, seed {meta['seed']})",
          "", "## Systems", ""]
    md += [f"- **{name}**: {meta['systems'][name]}" for name in names]
    if "quickstart" in systems:
        md += ["", "The quickstart has no answer generator: its \"answer\" is the text of the top retrieved chunk "
               "(~1024 tokens), so its accuracy is an upper bound on what quoting that chunk could give, not an "
               "answer a user could read at a glance; it never abstains."]
    md += ["", "## Headline metrics", ""]
    keys = list(HEADLINE) + [k for k in metrics["overall"] if k not in HEADLINE]
    md += _table(["metric", *names], [[k, *(fmt(s["overall"].get(k)) for s in systems.values())] for k in keys])
    for title, key in (("By language", "by_language"), ("By kind", "by_kind"),
                       ("By subkind", "by_subkind"), ("By fold", "by_fold"),
                       ("By where the question's names are (eval/patterns.py)", "by_pattern")):
        groups = metrics.get(key) or {}
        if not groups:
            continue
        md += ["", f"## {title} (full chain)", ""]
        md += _table([key[3:], "n", *BREAKDOWN], [[g, str(m["answer_accuracy"]["n"]), *(fmt(m.get(k)) for k in BREAKDOWN)]
                                                  for g, m in groups.items()])
    for key in ("by_language", "by_kind"):
        md += ["", f"## Answer accuracy {key.replace('_', ' ')}, all systems", ""]
        groups = list(metrics[key])
        md += _table(["system", *groups], [[n, *(fmt(s[key].get(g, {}).get("answer_accuracy")) for g in groups)]
                                           for n, s in systems.items()])
    md += ["", "## Latency (seconds)", ""]
    md += _table(["system", "stage", "p50", "p95", "mean", "max", "n"],
                 [[n, st, *(f"{v[k]:.4f}" if k != "n" else str(v[k]) for k in ("p50", "p95", "mean", "max", "n"))]
                  for n, s in systems.items() for st, v in s["latency"].items()])
    md += ["", "## Counts", ""]
    md += _table(["system", *metrics["counts"]], [[n, *(str(v) for v in s["counts"].values())]
                                                  for n, s in systems.items()])
    md += ["", "## Charts", "", *(f"![{c}]({c})" for c in CHARTS)]
    return "\n".join(md) + "\n"


def failures(rows: list[dict[str, Any]]) -> str:
    lines = ["", "## Questions the full chain got wrong (or flagged)", ""]
    bad = [r for r in rows if r["verdict"] != "correct" or r["why"]]
    lines += _table(["id", "lang", "kind", "verdict", "why"],
                    [[r["id"], r["lang"], r["kind"], r["verdict"], "; ".join(r["why"]).replace("|", "/")] for r in bad])
    return "\n".join(lines) + "\n"


def charts(out: Path, metrics: dict[str, Any], rows: dict[str, list[dict[str, Any]]]) -> list[Path]:
    """accuracy_by_language.png, accuracy_by_kind.png (bars per system, 95% CI whiskers), latency.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    systems, paths = _systems(metrics), []
    for key, name in (("by_language", CHARTS[0]), ("by_kind", CHARTS[1])):
        groups = list(metrics[key])
        fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(groups) * max(1, len(systems)) / 2), 4))
        width = 0.8 / len(systems)
        for i, (sname, s) in enumerate(systems.items()):
            vals, lo, hi = [], [], []
            for g in groups:
                m = s[key].get(g, {}).get("answer_accuracy") or {}
                v = m.get("value") or 0.0
                ci = m.get("ci95") or [v, v]
                vals.append(v)
                lo.append(max(0.0, v - ci[0]))
                hi.append(max(0.0, ci[1] - v))
            x = np.arange(len(groups)) + i * width - 0.4 + width / 2
            ax.bar(x, vals, width, yerr=[lo, hi], capsize=3, label=sname)
        ax.set_xticks(np.arange(len(groups)), groups)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("answer accuracy (95% CI)")
        ax.set_title(f"Answer accuracy {key.replace('_', ' ')}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        paths.append(out / name)
    stages = [st for st in metrics["latency"] if st != "generate" or metrics["latency"][st]["max"] > 0]
    data = [[r["timings"][st] * 1000 for r in rows["full"] if st in r.get("timings", {})] for st in stages]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(stages)), 4))
    if stages:
        ax.boxplot(data, tick_labels=stages, showfliers=True)
        ax.set_yscale("log")
    ax.set_ylabel("milliseconds (log)")
    ax.set_title("Latency per stage, full chain")
    fig.tight_layout()
    fig.savefig(out / CHARTS[2], dpi=100)
    plt.close(fig)
    return [*paths, out / CHARTS[2]]


def write_report(out: Path, metrics: dict[str, Any], rows: dict[str, list[dict[str, Any]]]) -> Path:
    """Write report.md and the charts into ``out``; returns the report path."""
    charts(out, metrics, rows)
    path = out / "report.md"
    path.write_text(markdown(metrics) + failures(rows["full"]), encoding="utf-8")
    return path
