"""Retrieval benchmark: index the 108 eval-corpus runbooks from scratch and score our query set.

    .venv/bin/python benchmarks/retrieval.py [--corpus DIR] [--queries FILE] [--misses] [--jsonl N]

Prints index time, recall@1/@3 and MRR per kind (alerts, symptom messages, and any finer
`tag`/`kind` the set carries) and overall, abstention on out-of-scope queries and on
answerable ones, and warm query latency p50/p95. A query file may group its cases
(alerts/symptoms/none) or list them flat; a case without `expect` is out of scope.
With a blind set (file name contains "blind") only aggregate figures are printed.
Skips (exit 0) when ../shared/eval-corpus is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.alerts import PayloadError, parse_payload  # noqa: E402
from bot.domain import Alert, AlertSource  # noqa: E402
from bot.retrieval import sync_and_open  # noqa: E402
from bot.settings import Settings  # noqa: E402

DEFAULT_CORPUS = ROOT.parent / "shared" / "eval-corpus" / "runbooks"


def to_query(case: dict[str, Any]) -> Alert | str:
    """An alert case as the Alertmanager alert it stands for; a message or a raw payload as
    `hotwash runbooks match` reads it (so plain text goes through the same parser)."""
    if "name" in case:
        labels = {"alertname": str(case["name"]), "severity": "warning"}
        labels.update({str(k): str(v) for k, v in dict(case.get("labels") or {}).items()})
        annotations = {str(k): str(v) for k, v in dict(case.get("annotations") or {}).items()}
        return Alert(name=str(case["name"]), source=AlertSource.ALERTMANAGER, labels=labels,
                     annotations=annotations, summary=str(case.get("summary", "")),
                     description=str(case.get("description", "")),
                     fingerprint=str(case["name"]))
    if isinstance(case.get("alert"), dict):
        # {labels, annotations}: sent as the Alertmanager webhook v4 body it would arrive in.
        raw = case["alert"]
        case = {**case, "payload": {
            "version": "4", "status": "firing", "receiver": "benchmark", "groupLabels": {},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "",
            "alerts": [{"status": "firing", "labels": dict(raw.get("labels") or {}),
                        "annotations": dict(raw.get("annotations") or {}),
                        "startsAt": "2026-11-28T10:00:00Z", "endsAt": "",
                        "fingerprint": "benchmark"}]}}
    payload = case.get("payload", case.get("text", ""))
    if not isinstance(payload, str):
        payload = json.dumps(payload)
    try:
        return parse_payload(payload)[0]
    except PayloadError:
        return payload


def _kind_of(case: dict[str, Any], group: str) -> str:
    if not case.get("expect"):
        return "none"
    kind = str(case.get("kind") or "").lower()
    for word, canonical in (("symptom", "symptom"), ("message", "symptom"), ("text", "symptom"),
                            ("slack", "symptom"), ("alert", "alert")):
        if word in kind or (not kind and word in group.lower()):
            return canonical
    structured = "name" in case or isinstance(case.get("payload") or case.get("alert"), dict)
    return "alert" if structured else "symptom"


def load_cases(raw: Any) -> list[dict[str, Any]]:
    """Cases from either layout: groups (alerts/symptoms/none: [...]) or flat lists; each
    gets a ``kind`` of alert, symptom or none (no ``expect``/``expected``), and keeps a finer
    ``tag``. An alert is ``name`` + summary/description/labels, or ``alert: {labels,
    annotations}``, or a raw ``payload``; a message is ``text``."""
    groups = raw.items() if isinstance(raw, dict) else [("", raw)]
    out: list[dict[str, Any]] = []
    for group, items in groups:
        if not isinstance(items, list):
            continue
        for case in items:
            if not isinstance(case, dict):
                continue
            expect = case.get("expect") or case.get("expected") or []
            item = {**case, "expect": [expect] if isinstance(expect, str) else list(expect)}
            item["tag"] = str(case.get("tag") or case.get("kind") or group or "")
            item["kind"] = _kind_of(item, str(group))
            out.append(item)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--queries", type=Path, default=ROOT / "benchmarks/retrieval_queries.yaml")
    parser.add_argument("--misses", action="store_true", help="print every miss")
    parser.add_argument("--index-dir", type=Path, default=None,
                        help="reuse (and sync) this index instead of a fresh one")
    parser.add_argument("--no-throughput", action="store_true",
                        help="skip the embedding throughput figures")
    parser.add_argument("--jsonl", type=int, default=0, metavar="N",
                        help="also time `hotwash runbooks match --jsonl` over N payloads")
    args = parser.parse_args()
    if args.misses and "blind" in args.queries.name:
        # A blind set stays an honest estimate only while nobody looks at its queries.
        print("refusing --misses on a blind set: aggregate figures only")
        return 2
    if not args.corpus.is_dir():
        print(f"skipped: {args.corpus} not found")
        return 0
    cases = load_cases(yaml.safe_load(args.queries.read_text()))

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
        scored: list[tuple[dict[str, Any], int | None, bool]] = []  # case, rank, abstained
        for case in cases:
            t = time.perf_counter()
            matches = index.match(to_query(case), limit=3)
            latencies.append((time.perf_counter() - t) * 1000)
            ids = [m.id for m in matches]
            rank = next((i + 1 for i, m in enumerate(ids) if m in case["expect"]), None)
            scored.append((case, rank, not ids))
            if not args.misses:
                continue
            label = case.get("name") or case.get("text") or case.get("tag")
            if case["kind"] == "none" and matches:
                print(f"  answered out-of-scope {label!s:.60} -> "
                      f"{matches[0].id}({matches[0].score:.2f})")
            elif case["kind"] != "none" and rank != 1:
                got = ", ".join(f"{m.id}({m.score:.2f})" for m in matches) or "ABSTAIN"
                print(f"  miss [{case['kind']}] {label!s:.70} -> {got}  "
                      f"(want {case['expect'][0]})")

    if not args.no_throughput:
        throughput(cases, args.corpus)
    if args.jsonl:
        time_jsonl(cases, args.corpus, args.jsonl)
    report(scored)
    q = statistics.quantiles(latencies, n=20)
    print(f"warm query latency: p50 {statistics.median(latencies):.1f} ms, p95 {q[18]:.1f} ms")
    return 0


def as_payload(case: dict[str, Any]) -> str:
    """One line of `match --jsonl` input: an Alertmanager v4 body for an alert, a Slack
    message event for every other message, plain text for the rest."""
    text = case.get("text")
    if isinstance(text, str):
        if len(text) % 2:
            return json.dumps({"type": "message", "channel": "C0ALERTS", "user": "U0ONCALL",
                               "text": text, "ts": "1795890000.000100"})
        return json.dumps(text)
    query = to_query(case)
    if isinstance(query, Alert):
        return json.dumps({
            "version": "4", "status": "firing", "receiver": "benchmark", "groupLabels": {},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "",
            "alerts": [{"status": "firing", "labels": {"alertname": query.name, **query.labels},
                        "annotations": {"summary": query.summary,
                                        "description": query.description,
                                        **query.annotations},
                        "startsAt": "2026-11-28T10:00:00Z", "endsAt": "",
                        "fingerprint": query.fingerprint}]})
    return json.dumps(str(query))


def time_jsonl(cases: list[dict[str, Any]], corpus: Path, n: int) -> None:
    """Wall time of the scoring command, start-up included: from an empty index directory,
    then again with the index built (what a second scoring run sees)."""
    import subprocess

    payloads = "\n".join(as_payload(cases[i % len(cases)]) for i in range(n)) + "\n"
    hotwash = Path(sys.executable).parent / "hotwash"
    with tempfile.TemporaryDirectory() as tmp:
        command = [str(hotwash), "runbooks", "match", "--jsonl", "--runbooks", str(corpus),
                   "--index-dir", str(Path(tmp) / "index")]
        env = {**os.environ, "HOTWASH_DATA_DIR": tmp}
        for label in ("from scratch", "index built"):
            started = time.perf_counter()
            done = subprocess.run(command, input=payloads, capture_output=True, text=True,
                                  env=env, check=True)
            seconds = time.perf_counter() - started
            lines = done.stdout.splitlines()
            answered = sum(bool(json.loads(line)["matches"]) for line in lines)
            print(f"match --jsonl over {n} payloads ({label}): {seconds:.1f} s, "
                  f"{len(lines)} results, {answered} with a runbook")


def report(scored: list[tuple[dict[str, Any], int | None, bool]]) -> None:
    """Recall and MRR per kind (and per finer tag when the set has them), then abstention."""
    answerable = [(c, rank, a) for c, rank, a in scored if c["kind"] != "none"]
    none = [(c, a) for c, _, a in scored if c["kind"] == "none"]
    kinds = sorted({c["kind"] for c, _, _ in answerable})
    print(f"queries: {len(answerable)} answerable ("
          + ", ".join(f"{sum(c['kind'] == k for c, _, _ in answerable)} {k}" for k in kinds)
          + f"), {len(none)} out of scope")

    def line(label: str, rows: list[tuple[dict[str, Any], int | None, bool]]) -> None:
        n = len(rows)
        if not n:
            return
        r1 = sum(rank == 1 for _, rank, _ in rows) / n
        r3 = sum(rank is not None and rank <= 3 for _, rank, _ in rows) / n
        mrr = statistics.fmean(1 / rank if rank else 0.0 for _, rank, _ in rows)
        print(f"  {label:18s} n={n:3d} recall@1 {r1:.3f}  recall@3 {r3:.3f}  MRR {mrr:.3f}")

    for kind in kinds:
        line(kind, [row for row in answerable if row[0]["kind"] == kind])
    tags = sorted({c["tag"] for c, _, _ in answerable} - set(kinds) - {"alerts", "symptoms"})
    if len(tags) > 1:
        for tag in tags:
            line(f"[{tag}]", [row for row in answerable if row[0]["tag"] == tag])
    line("overall", answerable)
    print(f"abstention: {sum(a for _, a in none)}/{len(none)} out-of-scope abstained, "
          f"{sum(a for _, _, a in answerable)}/{len(answerable)} answerable abstained")


def throughput(cases: list[dict[str, Any]], corpus: Path) -> None:
    """Embedding throughput of the packaged model: short texts (our queries) and runbook
    chunks, batches padded to their longest text."""
    from bot.embeddings import OnnxEmbedder
    from bot.runbooks import load_runbooks

    embedder = OnnxEmbedder()
    short = [str(c.get("text") or c.get("summary") or c.get("name")) for c in cases]
    short = (short * (200 // len(short) + 1))[:200]
    embedder.embed(short[:8])
    t = time.perf_counter()
    embedder.embed(short)
    short_rate = len(short) / (time.perf_counter() - t)
    runbooks, _ = load_runbooks(corpus)
    chunk_texts = [c.embed_text(rb.title) for rb in runbooks for c in rb.chunks]
    t = time.perf_counter()
    embedder.embed(chunk_texts)
    chunk_rate = len(chunk_texts) / (time.perf_counter() - t)
    print(f"embedding throughput: {short_rate:.0f} sentences/s (200 short texts), "
          f"{chunk_rate:.0f} chunks/s ({len(chunk_texts)} runbook chunks, <=128 tokens)")


if __name__ == "__main__":
    raise SystemExit(main())
