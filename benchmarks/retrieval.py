"""Retrieval benchmark: index the 108 eval-corpus runbooks from scratch and score our query set.

    .venv/bin/python benchmarks/retrieval.py [--corpus DIR] [--queries FILE] [--misses]

Prints index time, recall@1/@3 and MRR (overall, alerts, symptom messages), abstention on
out-of-scope queries and on answerable ones, and warm query latency p50/p95.
Skips (exit 0) when ../shared/eval-corpus is absent.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.domain import Alert, AlertSource  # noqa: E402
from bot.retrieval import sync_and_open  # noqa: E402
from bot.settings import Settings  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "eval-corpus" / "runbooks"


def to_query(case: dict[str, object]) -> Alert | str:
    if "name" in case:
        labels = {"alertname": str(case["name"]), "severity": "warning"}
        labels.update({str(k): str(v) for k, v in dict(case.get("labels") or {}).items()})  # type: ignore[call-overload]
        return Alert(name=str(case["name"]), source=AlertSource.ALERTMANAGER, labels=labels,
                     summary=str(case.get("summary", "")),
                     description=str(case.get("description", "")),
                     fingerprint=str(case["name"]))
    return str(case["text"])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--queries", type=Path, default=ROOT / "benchmarks/retrieval_queries.yaml")
    parser.add_argument("--misses", action="store_true", help="print every miss")
    parser.add_argument("--index-dir", type=Path, default=None,
                        help="reuse (and sync) this index instead of a fresh one")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        print(f"skipped: {args.corpus} not found")
        return 0
    cases = yaml.safe_load(args.queries.read_text())

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        started = time.perf_counter()
        index, stats = sync_and_open(settings=settings, runbooks_dir=args.corpus,
                                     index_dir=args.index_dir or Path(tmp) / "chroma")
        index_s = time.perf_counter() - started
        print(f"index from scratch: {stats.files} runbooks, {stats.chunks} chunks, "
              f"{index_s:.1f} s (embedding+store {stats.seconds:.1f} s)")
        index.match("warm up")

        latencies: list[float] = []
        results: dict[str, list[float]] = {"alerts": [], "symptoms": []}
        top1: dict[str, int] = {"alerts": 0, "symptoms": 0}
        top3: dict[str, int] = {"alerts": 0, "symptoms": 0}
        abstained_answerable = 0
        for group in ("alerts", "symptoms"):
            for case in cases[group]:
                t = time.perf_counter()
                matches = index.match(to_query(case), limit=3)
                latencies.append((time.perf_counter() - t) * 1000)
                ids = [m.id for m in matches]
                expect = list(case["expect"])
                rank = next((i + 1 for i, m in enumerate(ids) if m in expect), None)
                results[group].append(1 / rank if rank else 0.0)
                top1[group] += rank == 1
                top3[group] += rank is not None and rank <= 3
                abstained_answerable += not ids
                if args.misses and rank != 1:
                    label = case.get("name") or case.get("text")
                    got = ", ".join(f"{m.id}({m.score:.2f})" for m in matches) or "ABSTAIN"
                    print(f"  miss [{group}] {label!s:.70} -> {got}  (want {expect[0]})")
        abstained_none = 0
        for case in cases["none"]:
            t = time.perf_counter()
            matches = index.match(to_query(case), limit=3)
            latencies.append((time.perf_counter() - t) * 1000)
            abstained_none += not matches
            if args.misses and matches:
                label = case.get("name") or case.get("text")
                print(f"  answered out-of-scope {label!s:.60} -> "
                      f"{matches[0].id}({matches[0].score:.2f})")

    # Embedding throughput of the packaged model: short texts (our queries) and runbook
    # chunks, batches padded to their longest text.
    from bot.embeddings import OnnxEmbedder
    from bot.runbooks import load_runbooks

    embedder = OnnxEmbedder()
    short = [str(c.get("text") or c.get("summary") or c.get("name"))
             for group in ("alerts", "symptoms", "none") for c in cases[group]]
    short = (short * (200 // len(short) + 1))[:200]
    embedder.embed(short[:8])
    t = time.perf_counter()
    embedder.embed(short)
    short_rate = len(short) / (time.perf_counter() - t)
    runbooks, _ = load_runbooks(args.corpus)
    chunk_texts = [c.embed_text(rb.title) for rb in runbooks for c in rb.chunks]
    t = time.perf_counter()
    embedder.embed(chunk_texts)
    chunk_rate = len(chunk_texts) / (time.perf_counter() - t)
    print(f"embedding throughput: {short_rate:.0f} sentences/s (200 short texts), "
          f"{chunk_rate:.0f} chunks/s ({len(chunk_texts)} runbook chunks, <=128 tokens)")

    n_all = sum(len(v) for v in results.values())
    print(f"queries: {n_all} answerable ({len(results['alerts'])} alerts, "
          f"{len(results['symptoms'])} symptom messages), {len(cases['none'])} out of scope")
    for group in ("alerts", "symptoms"):
        n = len(results[group])
        if not n:
            continue
        print(f"  {group:9s} recall@1 {top1[group] / n:.3f}  recall@3 {top3[group] / n:.3f}  "
              f"MRR {statistics.fmean(results[group]):.3f}")
    all_rr = results["alerts"] + results["symptoms"]
    print(f"  overall   recall@1 {sum(top1.values()) / n_all:.3f}  "
          f"recall@3 {sum(top3.values()) / n_all:.3f}  MRR {statistics.fmean(all_rr):.3f}")
    print(f"abstention: {abstained_none}/{len(cases['none'])} out-of-scope abstained, "
          f"{abstained_answerable}/{n_all} answerable abstained")
    q = statistics.quantiles(latencies, n=20)
    print(f"warm query latency: p50 {statistics.median(latencies):.1f} ms, p95 {q[18]:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
