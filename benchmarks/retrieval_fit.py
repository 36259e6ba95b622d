"""Fit the retrieval ranker and abstainer on our own query sets, cross-validated.

    .venv/bin/python benchmarks/retrieval_fit.py [--corpus DIR] [--queries FILE ...]
        [--folds 5 | --by-set] [--write]

The ranker is a linear mix of the evidence columns of ``bot.retrieval.FEATURES`` trained as
a softmax over runbooks (the likelihood of *any* acceptable runbook), one weight vector for
named alerts and one for plain messages, with an L2 penalty so that no single query decides
a weight. The abstainer is a logistic regression on the ranking's shape
(``ranking_shape``) separating answerable from out-of-scope queries.

Prints k-fold cross-validated recall@1/@3 and abstention for the weights in the code and for
freshly fit ones (each fold scored by weights fit without it: an estimate of how the mix
does on queries it never saw), then the weights fit on every query, to paste into
bot/retrieval.py. Never point it at a blind set: that set must stay unseen.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from retrieval import DEFAULT_CORPUS, load_cases, to_query  # noqa: E402

from bot import retrieval as r  # noqa: E402
from bot.settings import Settings  # noqa: E402

L2 = 0.002


def fit_ranker(rows: list[tuple[np.ndarray, list[int]]], *, l2: float = L2,
               steps: int = 1500) -> np.ndarray:
    """Weights maximising sum log P(acceptable) - l2 |w|^2, by Adam on the full batch."""
    k = rows[0][0].shape[1]
    w = np.zeros(k)
    m = np.zeros(k)
    v = np.zeros(k)
    for step in range(1, steps + 1):
        grad = 2 * l2 * len(rows) * w
        for x, good in rows:
            z = r.mix(x, w)  # the linked rule's fixed bonus included, as at run time
            p = np.exp(z - z.max())
            p /= p.sum()
            pg = p[good] / p[good].sum()
            grad -= x[good].T @ pg - x.T @ p
        grad /= len(rows)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        w -= 0.05 * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return w


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 0.01,
                 steps: int = 4000) -> tuple[np.ndarray, float]:
    """Class-balanced, L2-penalised logistic regression (on standardised columns, returned
    in the raw units ``ranking_shape`` produces)."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    w = np.zeros(x.shape[1])
    b = 0.0
    # Out-of-scope queries are few: weigh the classes equally.
    weight = np.where(y == 1, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1))
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        g = (p - y) * weight
        w -= 0.5 * (z.T @ g + 2 * l2 * w)
        b -= 0.5 * g.sum()
    raw = w / scale
    return raw, float(b - raw @ mean)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--queries", type=Path, action="append",
                        help="a query set to fit on (repeatable; default: our four sets)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--by-set", action="store_true",
                        help="leave one query set out per fold (fit on the other authors)")
    parser.add_argument("--l2", type=float, default=L2, help="ranker weight penalty")
    parser.add_argument("--write", action="store_true",
                        help="write the weights fit on every query into bot/retrieval.py")
    parser.add_argument("--max-abstain", type=float, default=0.02,
                        help="answerable share the threshold may abstain on (in CV)")
    args = parser.parse_args()
    args.queries = args.queries or [ROOT / f"benchmarks/retrieval_queries{suffix}.yaml"
                                    for suffix in ("", "_second", "_third", "_fourth")]
    if any("blind" in q.name for q in args.queries):
        print("refusing to fit on a blind set")
        return 2
    if not args.corpus.is_dir():
        print(f"skipped: {args.corpus} not found")
        return 0
    cases = [{**c, "set": q.stem} for q in args.queries
             for c in load_cases(yaml.safe_load(q.read_text()))]

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        index, _ = r.sync_and_open(settings=settings, runbooks_dir=args.corpus,
                                   index_dir=Path(tmp) / "chroma")
        ids = [rb.id for rb in index._runbooks]  # noqa: SLF001 - a benchmark may look inside
        data = []
        for case in cases:
            q = r.Query.of(to_query(case))
            found = index.features(q)
            good = [ids.index(e) for e in case.get("expect", []) if e in ids]
            data.append((q, found, good, case["kind"]))

    def evaluate(weights: dict[bool, np.ndarray], items: list[int]) -> list[tuple]:
        out = []
        for i in items:
            q, found, good, kind = data[i]
            mixed, cosine = index.follow_links(r.mix(found.matrix, weights[bool(q.name)]),
                                               found.matrix[:, r.FEATURES.index("cosine")])
            order = list(np.argsort(-mixed, kind="stable"))
            rank = next((n + 1 for n, j in enumerate(order) if j in good), None)
            shape = r.ranking_shape(found.matrix, mixed=mixed, cosine=cosine,
                                    named=bool(q.name))
            out.append((i, rank, shape, kind))
        return out

    if args.by_set:
        names = [q.stem for q in args.queries]
        folds = [np.array([i for i, c in enumerate(cases) if c["set"] == n]) for n in names]
        args.folds = len(folds)
    else:
        rng = np.random.default_rng(7)
        perm = rng.permutation(len(data))
        folds = [perm[f::args.folds] for f in range(args.folds)]
    current = {True: np.asarray(r.NAME_WEIGHTS), False: np.asarray(r.TEXT_WEIGHTS)}

    def fit_all(items: list[int]) -> dict[bool, np.ndarray]:
        out = {}
        for named in (True, False):
            rows = [(data[i][1].matrix, data[i][2]) for i in items
                    if bool(data[i][0].name) == named and data[i][2]]
            out[named] = fit_ranker(rows, l2=args.l2)
        return out

    for label in ("weights in code", "fit per fold"):
        results = []
        for f in range(args.folds):
            train = [int(i) for g, fold in enumerate(folds) if g != f for i in fold]
            weights = current if label == "weights in code" else fit_all(train)
            train_res = evaluate(weights, train)
            x = np.array([s for _, _, s, _ in train_res])
            y = np.array([float(data[i][2] != []) for i, _, _, _ in train_res])
            aw, ab = fit_logistic(x, y)
            p_train = 1 / (1 + np.exp(-(x @ aw + ab)))
            answerable = np.sort(p_train[y == 1])
            threshold = float(answerable[int(args.max_abstain * len(answerable))])
            for i, rank, shape, kind in evaluate(weights, [int(i) for i in folds[f]]):
                p = 1 / (1 + np.exp(-(shape @ aw + ab)))
                results.append((i, rank, kind, p >= threshold))
        if args.by_set:
            for fold, q in zip(folds, args.queries, strict=True):
                members = set(fold.tolist())
                report(f"  {q.stem.removeprefix('retrieval_queries_')}",
                       [row for row in results if row[0] in members], data)
        report(label, results, data)

    weights = fit_all(list(range(len(data))))
    res = evaluate(weights, list(range(len(data))))
    x = np.array([s for _, _, s, _ in res])
    y = np.array([float(d[2] != []) for d in data])
    aw, ab = fit_logistic(x, y)
    p = 1 / (1 + np.exp(-(x @ aw + ab)))
    threshold = float(np.sort(p[y == 1])[int(args.max_abstain * int(y.sum()))])
    if args.write:
        write_constants({
            "NAME_WEIGHTS": tuple(round(float(v), 2) + 0.0 for v in weights[True]),
            "TEXT_WEIGHTS": tuple(round(float(v), 2) + 0.0 for v in weights[False]),
            "ABSTAIN_WEIGHTS": tuple(round(float(v), 2) + 0.0 for v in aw),
            "ABSTAIN_BIAS": round(float(ab), 2),
            "ABSTAIN_BELOW": round(threshold, 3),
        })
    print("fit on every query (paste into bot/retrieval.py, or run with --write):")
    print(f"NAME_WEIGHTS = {tuple(round(float(v), 2) + 0.0 for v in weights[True])}")
    print(f"TEXT_WEIGHTS = {tuple(round(float(v), 2) + 0.0 for v in weights[False])}")
    print(f"ABSTAIN_WEIGHTS = {tuple(round(float(v), 2) + 0.0 for v in aw)}")
    print(f"ABSTAIN_BIAS = {round(float(ab), 2)}")
    print(f"# threshold on P(answerable) at {args.max_abstain:.0%} answerable abstained: "
          f"{threshold:.3f}")
    return 0


def write_constants(values: dict[str, object]) -> None:
    path = ROOT / "bot" / "retrieval.py"
    text = path.read_text()
    for name, value in values.items():
        rendered = f"{name} = {value}"
        if len(rendered) > 100 and isinstance(value, tuple):
            head = f"{name} = ("
            body = ", ".join(str(v) for v in value)
            cut = body.rfind(", ", 0, 100 - len(head)) + 1
            rendered = f"{head}{body[:cut]}\n{' ' * len(head)}{body[cut + 1:]})"
        text, n = re.subn(rf"^{name} = (\([^)]*\)|\S+)$", rendered.replace("\\", "\\\\"),
                          text, count=1, flags=re.M)
        if n != 1:
            raise SystemExit(f"{name} not found in {path}")
    path.write_text(text)
    print(f"wrote the fitted constants into {path.relative_to(ROOT)}")


def report(label: str, results: list[tuple], data: list) -> None:
    answerable = [(rank, kind, said) for i, rank, kind, said in results if data[i][2]]
    none = [said for i, _, _, said in results if not data[i][2]]
    n = len(answerable)
    r1 = sum(rank == 1 for rank, _, _ in answerable) / n
    r3 = sum(rank is not None and rank <= 3 for rank, _, _ in answerable) / n
    sym = [rank for rank, kind, _ in answerable if kind == "symptom"]
    s3 = sum(rank is not None and rank <= 3 for rank in sym) / max(len(sym), 1)
    print(f"{label:16s} CV recall@1 {r1:.3f} recall@3 {r3:.3f} symptom recall@3 {s3:.3f} | "
          f"abstained {sum(not s for s in none)}/{len(none)} out-of-scope, "
          f"{sum(not s for _, _, s in answerable)}/{n} answerable")


if __name__ == "__main__":
    raise SystemExit(main())
