"""Hybrid runbook retrieval that abstains: dense (MiniLM via Chroma) + BM25 + runbook names.

Evidence is computed for *every* runbook (the corpus is small enough to score exactly,
which is what makes a calibrated score possible), one row of FEATURES per runbook:

- **name**: the alert's name words against the runbook's names (file stem, title, alerts
  in front matter, top heading), IDF-weighted, after light stemming and the ops vocabulary
  (bot/vocabulary.yaml: host = node, ds = daemonset, x509 = certificate ...), because many
  alerts carry another organisation's naming for the same condition; also how much of the
  runbook's name the whole query text covers, and the query's cosine to the names alone;
- **dense**: cosine similarity of the query to the runbook's chunks (best chunk, the two
  best, and the overview chunk that says what the runbook is about), and the best of any
  one clause of a message on its own (and against the names);
- **lexical**: BM25 over chunks (and over the overview alone) with the same tokenizer,
  normalised per query; each query word counted once;
- **entities**: agreement or clash on the one word of a closed set that tells sibling
  runbooks apart (Deployment / DaemonSet / StatefulSet, cpu / memory, leader / member, how
  much of a limit is used: almost / fully / exceeded / filling, and how many instances:
  the whole cluster / some), and on its own when a label is named after the object kind
  (statefulset=db); a percentage of a capacity reads as its degree (92% of quota: almost);
- **fused**: reciprocal ranks of the name, dense and lexical rankers.

A linear mix of them, fit as a softmax over runbooks on our own query sets and checked by
cross-validation (benchmarks/retrieval_fit.py), ranks the runbooks. Whether to answer at
all is a second small model on the ranking's shape (how high and how clear the winner is,
its cosine and words): below a threshold the index abstains (returns []), because "no
runbook covers this" is more useful to an on-call engineer than a wrong link.
"""

from __future__ import annotations

import logging
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bot.domain import Alert, RunbookMatch
from bot.runbooks import IndexStats, Progress, words

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from bot.adapters.chroma import StoredChunk
    from bot.embeddings import Embedder
    from bot.settings import Settings

log = logging.getLogger(__name__)


def _load_vocabulary() -> tuple[dict[str, str], dict[str, str], dict[str, tuple[str, ...]]]:
    """The ops vocabulary (bot/vocabulary.yaml): spellings folded on both sides, idioms and
    synonyms for queries. Keys are read the way query text is (``words``): a key that is
    several words there ("x509" -> x 509) is matched as a phrase."""
    import yaml

    raw = yaml.safe_load(resources.files("bot").joinpath("vocabulary.yaml").read_text())
    canonical = {str(k): str(v) for k, v in (raw.get("canonical") or {}).items()
                 if words(str(k)) == [str(k)]}
    idioms: dict[str, str] = {}
    synonyms: dict[str, tuple[str, ...]] = {}
    for key, meaning in (raw.get("idioms") or {}).items():
        idioms[" ".join(words(str(key)))] = " ".join(str(m) for m in meaning)
    for key, meaning in (raw.get("synonyms") or {}).items():
        parts = words(str(key))
        if parts == [str(key)]:
            synonyms[str(key)] = tuple(str(m) for m in meaning)
        elif parts:
            idioms.setdefault(" ".join(parts), " ".join(str(m) for m in meaning))
    return canonical, idioms, synonyms


# CANONICAL: spellings of one word, folded the same way in runbooks and queries.
# IDIOMS: how people say a thing in chat or an error string, and the words runbooks use for it
# (queries only; matched on whole words after CamelCase splitting).
# SYNONYMS: a query word also counts as these words. Terms of the trade, never tuned to one
# corpus; the documents are not expanded.
CANONICAL, IDIOMS, SYNONYMS = _load_vocabulary()
STOPWORDS = frozenset(
    "a an the of to in on for and or is are be been was were it its this that with at by "
    "from as has have had not no but if then than so we our us you your i me my they them "
    "there here just now any all some can could should would will do does did up out".split()
)
# Words that name an alert's form, not its subject: weak evidence of a match.
WEAK = frozenset(
    "alert alerts high low too many is firing critical warning warn info page rate total "
    "count detected detect".split()
)
# The ranker: a linear mix of FEATURES in logit units (softmax over runbooks), one weight
# vector for alerts with a name and one for plain messages. Fit by benchmarks/retrieval_fit.py.
NAME_WEIGHTS = (2.16, 2.66, 0.78, 1.62, 1.38, 1.83, 1.36, 2.51, 1.8, 0.06, 1.25, -1.01, 2.01, 0.0,
                1.3, 0.86, 0.35)
TEXT_WEIGHTS = (1.82, 2.28, 0.64, 1.75, 1.14, 1.41, 1.2, 3.06, 2.13, 0.0, 0.78, -1.09, 2.32, 0.0,
                1.45, 1.03, 0.2)
# Abstention: P(some runbook answers) from the shape of the ranking (ABSTAIN_FEATURES), a
# logistic model fit on answerable vs out-of-scope queries by the same script.
ABSTAIN_FEATURES = ("top", "margin", "cosine", "lexical", "unknown", "conflict", "named")
ABSTAIN_WEIGHTS = (0.27, 0.15, 6.6, 3.29, -2.11, 1.18, -0.51)
ABSTAIN_BIAS = -8.93
# At 2% of our answerable queries abstained (cross-validated leaving one of our four sets out
# at a time: 20/645 answerable and 79/98 out of scope abstained).
ABSTAIN_BELOW = 0.259
# The runbook's author named this very alert, or the alert links its runbook: rank it first.
LINKED_BONUS = 3.0
LINKED_CONFIDENCE = 0.9
# A best BM25 score at which the lexical evidence counts in full (one rare shared word stays
# below it).
LEXICAL_FULL = 8.0


# What a runbook is about is often told apart from its neighbours by one word of a closed
# set: the workload kind, the resource, the etcd role... When the query names a member of
# such a set and a runbook's name names another one (Deployment vs DaemonSet), that is
# evidence against it; when both name the same one, evidence for it. Terms of the trade,
# not tied to one corpus.
ENTITY_GROUPS: tuple[frozenset[str], ...] = tuple(frozenset(g.split()) for g in (
    "deployment daemonset statefulset job",
    "cpu memory",
    "leader member",
    "quota overcommit",
    "client server",
    "kubelet scheduler controller proxy etcd alertmanager operator",
    "receive transmit",
    "almost fully exceeded filling",  # how much of a limit is used
    "cluster any some",  # every instance or only some (any/some are stopwords elsewhere)
))
# Stopwords that still tell siblings apart as entity words (ErrorSendingAlertsToAny vs
# ...ToSome). In a query they count only when a vocabulary phrase said them.
_ENTITY_STOPWORDS = frozenset({"any", "some"})
# The evidence columns the ranker mixes; weights below are fit by benchmarks/retrieval_fit.py
# (listwise logistic regression, cross-validated on the four benchmarks/retrieval_queries*
# sets written by four people; the blind sets are never fitted on).
FEATURES = ("name", "name_text", "name_dense", "dense", "cosine", "overview", "top2",
            "lexical", "overview_lexical", "linked", "agree", "conflict", "fused", "unknown",
            "clause", "clause_name", "label_kind")


@dataclass(frozen=True)
class Features:
    """Per-runbook evidence for one query (rows: runbooks; columns: FEATURES)."""

    matrix: NDArray[np.float64]
    best_row: NDArray[np.int64]


def stem(word: str) -> str:
    """A deliberately light English stemmer (no dependency): enough to meet
    completed/completion, failing/failures, replicas/replica, readiness/ready."""
    if word.endswith("iness") and len(word) > 7:
        return word[:-5] + "y"
    for suffix in ("ations", "ation", "ions", "ion", "ings", "ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            word = word[: -len(suffix)]
            break
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    return word


# Kubernetes kinds are one word in some names and two in others (DaemonSet, Daemonset,
# "daemon set"): read them as one word on both sides so "set" alone matches nothing.
_COMPOUNDS = {("daemon", "set"): "daemonset", ("stateful", "set"): "statefulset",
              ("replica", "set"): "replicaset", ("config", "map"): "configmap",
              ("cron", "job"): "cronjob", ("service", "monitor"): "servicemonitor",
              ("pod", "monitor"): "podmonitor"}


def _joined(parts: list[str]) -> list[str]:
    out: list[str] = []
    for word in parts:
        if out and (out[-1], word) in _COMPOUNDS:
            out[-1] = _COMPOUNDS[(out[-1], word)]
        else:
            out.append(word)
    return out


def tokens(text: str, *, expand: bool = False) -> list[str]:
    """Stemmed word tokens; ``expand`` adds ops synonyms (queries only)."""
    out: list[str] = []
    previous = ""
    for word in _joined(words(text)):
        if word in STOPWORDS or len(word) < 2 and not word.isdigit():
            continue
        for part in CANONICAL.get(word, word).split():
            out.append(stem(part))
            # An "API server" is not a host: keep "server" from meaning node there.
            if expand and not (part == "server" and previous == "api"):
                out.extend(stem(s) for s in SYNONYMS.get(part, ()))
            previous = part
            if expand and part != word:
                out.extend(stem(s) for s in SYNONYMS.get(word, ()))
    return out


@dataclass(frozen=True)
class Query:
    """What an alert or message is searched with."""

    name: str  # an alert name ("" for a plain message)
    text: str  # free text: name words, summary, description, message
    labels: str  # label values that may name the subject (job, service, container)
    runbook_hint: str = ""  # last path segment of the alert's runbook_url, lowercased
    label_keys: str = ""  # names of the labels that say what the alert is about
    segments: str = ""  # run-together words split into the index's words (outofpods)

    @cached_property
    def idioms(self) -> str:
        """Words the query's ops idioms stand for ("open files" -> file descriptors), and
        its run-together words split apart."""
        lowered = " ".join(words(self.text))
        said = [meaning for phrase, meaning in IDIOMS.items() if f" {phrase} " in f" {lowered} "]
        said += _usage_degrees(self.text)
        return " ".join([*said, self.segments] if self.segments else said)

    @classmethod
    def of(cls, query: Alert | str) -> Query:
        if isinstance(query, str):
            text = _SLACK_MARKUP.sub(" ", _URL.sub(" ", query)).strip()
            if _looks_like_identifier(text) and len(words(text)) > 1:
                return cls(name=text, text=humanize_name(text), labels="")
            return cls(name="", text=text, labels="")
        alert = query
        text_parts = [alert.summary, alert.description, alert.text]
        for key in ("message", "summary", "description"):
            value = alert.annotations.get(key)
            if value and value not in text_parts:
                text_parts.append(value)
        label_parts = [alert.labels[k] for k in
                       ("service", "job", "container", "app", "component", "namespace")
                       if alert.labels.get(k)]
        # A label's *name* says what kind of object the alert is about (kube-state-metrics
        # and exporters name them so: statefulset, daemonset, persistentvolumeclaim,
        # mountpoint, device...): evidence like a word of the summary, unlike its value.
        keys = [key for key in alert.labels
                if key.lower() not in _GENERIC_LABELS and not key.startswith("__")]
        # Placeholders the parser gives a payload without a name are not alert names.
        name = alert.name if _looks_like_identifier(alert.name) and \
            alert.name not in _PLACEHOLDER_NAMES else ""
        if not name and alert.name and alert.name not in _PLACEHOLDER_NAMES \
                and not any(alert.name in p for p in text_parts if p):
            text_parts.insert(0, alert.name)
        # A runbook link in the annotations counts as is; one in free text only if it says so.
        urls = [alert.annotations.get(k, "") for k in ("runbook_url", "runbook", "runbook_link")]
        urls += [u for u in _URL.findall("\n".join(p for p in text_parts if p))
                 if "runbook" in u.lower()]
        hint = next((_runbook_hint(u) for u in urls if u), "")
        # URLs are not words about the incident: their host and path would only add noise.
        text_parts = [_SLACK_MARKUP.sub(" ", _URL.sub(" ", p)).strip() for p in text_parts if p]
        text = "\n".join([humanize_name(name), *[p for p in text_parts if p]]).strip()
        return cls(name=name, text=text, labels=" ".join(label_parts + keys),
                   runbook_hint=hint, label_keys=" ".join(keys))


# Label names every alert carries whatever it is about (routing, ownership, the scraper).
_GENERIC_LABELS = frozenset({
    "alertname", "severity", "priority", "cluster", "env", "environment", "region", "zone",
    "datacenter", "dc", "team", "owner", "namespace", "instance", "job", "service", "app",
    "component", "prometheus", "prometheus_replica", "receive", "tenant", "project",
    "endpoint", "uid", "replica", "le", "quantile", "tier", "version", "source",
})
_PLACEHOLDER_NAMES = frozenset({"UnnamedAlert", "GrafanaAlert", "Symptom report"})
_JOINERS = frozenset({"of", "in", "up", "on", "to", "no", "not"})
_URL = re.compile(r"<?https?://[^\s>]+>?")
# Where one clause of a message ends and the next begins.
_CLAUSE = re.compile(r"[.;!?\n]+(?:\s|$)|,\s|\s-+\s|\s\bbut\b\s")
# Slack mentions (<@U..>, <!here>, <#C..|name>) and :emoji: codes say nothing about the incident.
_SLACK_MARKUP = re.compile(r"<[@!#][^>]*>|:[a-z0-9_+-]+:")


# A share of some capacity: "97% full", "at 92% of quota", df's "96G 4.0G 96% /".
_PERCENT = re.compile(r"(?<![\d.])(\d{2,3}(?:\.\d+)?)\s?(?:%|percent|pct\b)", re.I)
_CAPACITY = re.compile(r"quota|\bused\b|usage|\bfull\b|capacity|disk|volume|filesystem|\bfs\b|"
                       r"inode|\blimit|\bhard\b|storage|space|%\s+/", re.I)


def _usage_degrees(text: str) -> list[str]:
    """How much of a limit a percentage of usage says is used: from 85% "almost full", at
    100% "fully used", above it "exceeded". Only next to capacity words, so an error rate
    or a share of throttled periods says nothing here."""
    out: list[str] = []
    for match in _PERCENT.finditer(text):
        value = float(match.group(1))
        around = text[max(0, match.start() - 40):match.end() + 25]
        if value < 85 or not _CAPACITY.search(around):
            continue
        out.append("almost full" if value < 100 else "fully used" if value == 100
                   else "exceeded")
    return out


def _runbook_hint(url: str) -> str:
    path = url.strip("<>").split("|", 1)[0].split("#", 1)[0].split("?", 1)[0].rstrip("/")
    last = path.rsplit("/", 1)[-1]
    return last.removesuffix(".md").lower()


_ACTIONABLE = ("diagnos", "mitigat", "troubleshoot", "remediat", "resolution", "investigat",
               "fix", "steps", "actions", "what to do", "response")
_BACKGROUND = ("impact", "follow", "escalat", "reference", "see also", "links", "owner")


def _section_prior(section: str) -> float:
    head = section.split(" > ", 1)[0].lower()
    if any(word in head for word in _ACTIONABLE):
        return 0.06
    if any(word in head for word in _BACKGROUND):
        return -0.06
    return 0.0


def _looks_like_identifier(name: str) -> bool:
    return bool(name) and " " not in name.strip() and len(name) <= 120


def humanize_name(name: str) -> str:
    return " ".join(words(name))


def mix(matrix: NDArray[np.float64], weights: Sequence[float]) -> NDArray[np.float64]:
    """The ranker's score per runbook (logit units): learnt weights plus the linked rule."""
    linked = matrix[:, FEATURES.index("linked")]
    return np.asarray(matrix @ np.asarray(weights) + LINKED_BONUS * linked, dtype=np.float64)


def ranking_shape(matrix: NDArray[np.float64], *, mixed: NDArray[np.float64],
                  cosine: NDArray[np.float64], named: bool) -> NDArray[np.float64]:
    """How decisive one query's ranking is, as ABSTAIN_FEATURES: the best mix, its margin
    over the runner-up, the best runbook's cosine and words, whether the alert's system is
    unknown to the corpus, whether its key entities clash, and whether it is a named alert."""
    order = np.argsort(-mixed, kind="stable")
    top = int(order[0])
    second = float(mixed[order[1]]) if len(order) > 1 else float(mixed[top]) - 5.0
    column = {f: matrix[top, FEATURES.index(f)] for f in FEATURES}
    return np.array([float(mixed[top]), min(float(mixed[top]) - second, 5.0),
                     float(cosine[top]), column["lexical"], column["unknown"],
                     column["conflict"], float(named)])


@dataclass
class _Runbook:
    id: str
    title: str
    names: tuple[str, ...]
    name_tokens: tuple[frozenset[str], ...]  # one set per name
    aliases: frozenset[str]  # declared names, as normalised words
    chunk_rows: list[int]
    thin: bool  # almost no text of its own (a page that only links elsewhere)
    links: tuple[str, ...]


class HybridRunbookIndex:
    """The RunbookIndex port over chunks loaded from Chroma, scored in memory."""

    def __init__(self, *, chunks: Sequence[StoredChunk], vectors: NDArray[np.float32],
                 embedder: Embedder, abstain_below: float = ABSTAIN_BELOW) -> None:
        self._chunks = list(chunks)
        self._vectors = vectors
        self._embedder = embedder
        self._abstain_below = abstain_below
        self._runbooks: list[_Runbook] = []
        by_id: dict[str, list[int]] = defaultdict(list)
        for row, chunk in enumerate(self._chunks):
            by_id[chunk.runbook_id].append(row)
        for runbook_id in sorted(by_id):
            rows = by_id[runbook_id]
            first = self._chunks[rows[0]]
            names = first.names or (runbook_id.rsplit("/", 1)[-1],)
            name_tokens = tuple(dict.fromkeys(
                frozenset(tokens(n)) for n in names if tokens(n)))
            self._runbooks.append(_Runbook(
                id=runbook_id, title=first.title, names=names, name_tokens=name_tokens,
                aliases=frozenset(humanize_name(a) for a in first.aliases),
                chunk_rows=rows,
                thin=first.body_chars < 200, links=first.links,
            ))
        self._position = {rb.id: i for i, rb in enumerate(self._runbooks)}
        self._chunk_runbook = np.array(
            [self._position[c.runbook_id] for c in self._chunks], dtype=np.int64)
        # IDF of name words across runbooks: "kube" says little, "crash" a lot.
        n = max(len(self._runbooks), 1)
        df: dict[str, int] = defaultdict(int)
        for rb in self._runbooks:
            for t in frozenset().union(*rb.name_tokens):
                df[t] += 1
        self._name_idf = {t: math.log(1 + n / c) for t, c in df.items()}
        self._bm25 = self._build_bm25()
        self._name_vectors: NDArray[np.float32] | None = None
        self._overview_rows = np.array(
            [r for r, c in enumerate(self._chunks) if c.kind == "overview"], dtype=np.int64)
        self._entity_groups = [frozenset(stem(w) for w in group) for group in ENTITY_GROUPS]
        self._runbook_entities = [
            frozenset().union(*rb.name_tokens, (w for n in rb.names for w in words(n)
                                                if w in _ENTITY_STOPWORDS))
            for rb in self._runbooks]
        # An on-call engineer opening a runbook mid-incident wants the steps: on a near tie,
        # point at Diagnosis/Mitigation rather than Impact or Follow-up.
        self._section_prior = np.array([_section_prior(c.section) for c in self._chunks])
        self._words = frozenset(
            w for c in self._chunks for w in words(f"{c.title} {c.section} {c.text} "
                                                   f"{' '.join(c.names)}"))
        self._vocabulary = frozenset(
            t for c in self._chunks for t in tokens(f"{c.title} {c.text} {' '.join(c.names)}"))

    def _build_bm25(self) -> Any:
        if not self._chunks:
            return None
        import bm25s

        corpus = [tokens(f"{c.title} {c.section} {c.text}") or ["_"] for c in self._chunks]
        model = bm25s.BM25()
        model.index(corpus, show_progress=False)
        return model

    @property
    def size(self) -> int:
        return len(self._runbooks)

    def match(self, query: Alert | str, *, limit: int = 3) -> list[RunbookMatch]:
        """Ranked runbooks with calibrated 0..1 scores; [] when the evidence is weak."""
        scored = self.score(query)
        out: list[RunbookMatch] = []
        # The decision to answer is the best runbook's; the runners-up follow it (an on-call
        # engineer reads two more links gladly), each with its own lower score.
        if not scored or scored[0][0] < self._abstain_below:
            return []
        for score, rb, row in scored[:limit]:
            chunk = self._chunks[row]
            sections = tuple(dict.fromkeys(self._chunks[r].section for r in rb.chunk_rows))
            out.append(RunbookMatch(id=rb.id, title=rb.title, score=round(score, 4),
                                    section=chunk.section, text=chunk.text, sections=sections))
        return out

    def score(self, query: Alert | str) -> list[tuple[float, _Runbook, int]]:
        """Every runbook as (calibrated confidence, runbook, best chunk row), best first."""
        if not self._runbooks:
            return []
        q = Query.of(query)
        if not (q.text or q.labels):
            return []
        found = self.features(q)
        weights = NAME_WEIGHTS if q.name else TEXT_WEIGHTS
        mixed, cosine = self.follow_links(mix(found.matrix, weights),
                                          found.matrix[:, FEATURES.index("cosine")])
        order = np.argsort(-mixed, kind="stable")
        shape = ranking_shape(found.matrix, mixed=mixed, cosine=cosine, named=bool(q.name))
        logit = ABSTAIN_BIAS + float(shape @ np.asarray(ABSTAIN_WEIGHTS))
        answerable = 1.0 / (1.0 + math.exp(-logit))
        # P(runbook i answers) = P(some runbook does) x i's odds against the best one.
        confidence = answerable * np.exp(np.minimum(mixed - mixed[order[0]], 0.0))
        linked = found.matrix[:, FEATURES.index("linked")] > 0
        confidence = np.where(linked, np.maximum(confidence, LINKED_CONFIDENCE), confidence)
        out: list[tuple[float, _Runbook, int]] = []
        ceiling = 1.0
        for i in order:
            ceiling = min(ceiling, float(confidence[i]))  # scores never rise down the list
            out.append((ceiling, self._runbooks[i], int(found.best_row[i])))
        return out

    def features(self, q: Query) -> Features:
        """The evidence for every runbook, one row each, columns as in FEATURES."""
        q = self.segmented(q)
        name_scores, name_text = self._name_scores(q)
        vectors = self._embed_query(q)
        dense_rb, cosine, chunk_sims = self._dense_scores(vectors)
        name_dense, clause_name = self._name_dense(vectors)
        clause = self._clause_scores(vectors)
        overview_cos, top2_cos = self._dense_views(chunk_sims)
        lexical, chunk_lexical = self._lexical_scores(q)
        best_row = self._best_rows(chunk_sims, chunk_lexical)
        overview_lex = np.zeros(len(self._runbooks))
        rows = self._overview_rows
        overview_lex[self._chunk_runbook[rows]] = chunk_lexical[rows]
        # Named links are the strongest evidence there is: the runbook's author named this very
        # alert (file name, title or `alerts:`), or the alert links its runbook (runbook_url).
        exact = humanize_name(q.name) if q.name else None
        linked = np.array([
            (exact is not None and exact in rb.aliases)
            or (bool(q.runbook_hint) and rb.id.rsplit("/", 1)[-1].lower() == q.runbook_hint)
            for rb in self._runbooks
        ], dtype=np.float64)
        agree, conflict = self._entity_scores(f"{q.name or q.text} {q.label_keys}",
                                              phrases=q.idioms)
        # A label *named* after the object kind (kube-state-metrics: statefulset=db) says
        # exactly what the alert is about, whatever its name: its own column.
        label_agree, label_conflict = self._entity_scores(q.label_keys)
        # Rank fusion of the dense and lexical rankers: ranks are comparable across queries
        # where raw scores are not.
        fused = np.zeros(len(self._runbooks))
        for signal in (dense_rb, lexical, name_scores):
            ranks = np.empty(len(signal))
            ranks[np.argsort(-signal, kind="stable")] = np.arange(len(signal))
            fused += np.where(signal > 0, 10.0 / (10.0 + ranks), 0.0)
        columns = {
            "name": name_scores, "name_text": name_text, "name_dense": name_dense,
            "dense": dense_rb, "cosine": cosine, "overview": overview_cos,
            "top2": top2_cos, "lexical": lexical, "overview_lexical": overview_lex,
            "linked": linked, "agree": agree, "conflict": conflict, "fused": fused / 3.0,
            "clause": clause, "clause_name": clause_name,
            "label_kind": label_agree - label_conflict,
            "unknown": np.full(len(self._runbooks),
                               float(bool(q.name) and not self._knows_subject(q.name))),
        }
        matrix = np.stack([columns[f] for f in FEATURES], axis=1)
        return Features(matrix=matrix, best_row=best_row)

    def segmented(self, q: Query) -> Query:
        """``q`` with its run-together words split into words the runbooks use: people and
        tools write ``numberMisscheduled``, ``OutOfpods``, ``kubestatemetrics`` where a
        runbook says "mis scheduled", "out of pods", "kube state metrics"."""
        parts = [" ".join(split) for word in dict.fromkeys(words(f"{q.name} {q.text}"))
                 if (split := self._split_compound(word))]
        return replace(q, segments=" ".join(parts)) if parts else q

    def _split_compound(self, word: str) -> list[str] | None:
        if len(word) < 6 or not word.isalpha() or word in self._words:
            return None
        # Fewest pieces (at most three), each a word of the index (two letters only for the
        # few small words that join names: of, in, up...).
        best: list[list[str] | None] = [None] * (len(word) + 1)
        best[0] = []
        for end in range(1, len(word) + 1):
            for start in range(max(0, end - 20), end):
                piece = word[start:end]
                head = best[start]
                if head is None or len(head) >= 3:
                    continue
                if (len(piece) >= 3 and piece in self._words) or piece in _JOINERS:
                    if best[end] is None or len(head) + 1 < len(best[end] or ()):
                        best[end] = [*head, piece]
        split = best[len(word)]
        return split if split and len(split) > 1 else None

    def follow_links(self, mixed: NDArray[np.float64], cosine: NDArray[np.float64],
                     ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """A page that only links elsewhere is scored as its target where that is better."""
        mixed, cosine = mixed.copy(), cosine.copy()
        for rb in self._runbooks:
            if rb.thin:
                for link in rb.links:
                    j = self._position.get(link)
                    if j is not None:
                        i = self._position[rb.id]
                        mixed[i] = max(mixed[i], mixed[j] - 0.02)
                        cosine[i] = max(cosine[i], cosine[j])
        return mixed, cosine

    def _entity_scores(self, text: str, *, phrases: str = ""
                       ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Per runbook, how many closed word sets its name agrees / conflicts with on what
        ``text`` and the vocabulary's ``phrases`` for it say (only phrases may say any/some)."""
        said = set(tokens(f"{text} {phrases}", expand=True)) | {
            w for w in words(phrases) if w in _ENTITY_STOPWORDS}
        agree = np.zeros(len(self._runbooks))
        conflict = np.zeros(len(self._runbooks))
        asked = [group & said for group in self._entity_groups]
        for i, names in enumerate(self._runbook_entities):
            for group, wanted in zip(self._entity_groups, asked, strict=True):
                named = group & names
                if wanted and named:
                    if wanted & named:
                        agree[i] += 1
                    else:
                        conflict[i] += 1
        return agree, conflict

    def _embed_query(self, q: Query) -> NDArray[np.float32]:
        """The query's vector (row 0), then one per clause when it has several: a message
        often says what is wrong in one clause among chatter ("scaled a deployment and
        nothing happened, kube-controller-manager isn't running on any master")."""
        if not q.text or len(self._vectors) == 0:
            return np.zeros((0, self._vectors.shape[1] if self._vectors.ndim == 2 else 0),
                            dtype=np.float32)
        parts = [p.strip() for p in _CLAUSE.split(q.text) if len(p.split()) >= 3]
        texts = [q.text, *parts] if len(parts) > 1 else [q.text]
        return np.asarray(self._embedder.embed(texts), dtype=np.float32)

    def _clause_scores(self, vectors: NDArray[np.float32]) -> NDArray[np.float64]:
        """Per runbook, the best cosine of any one clause (the whole query when it has only
        one) to any of its chunks, stretched like the dense score."""
        n = len(self._runbooks)
        if len(vectors) == 0:
            return np.zeros(n)
        if len(vectors) > 1:
            vectors = vectors[1:]  # the clauses alone: the whole query has its own columns
        sims = vectors @ self._vectors.T  # (clauses, chunks)
        best = np.full(n, -1.0)
        np.maximum.at(best, self._chunk_runbook, sims.max(axis=0))
        return _stretch(best)

    def _name_dense(self, vectors: NDArray[np.float32],
                    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Cosine of the query to each runbook's names alone (a one-line document per
        runbook): short against short, where a long chunk would dilute the meaning; and
        the best of any clause's, stretched."""
        if self._name_vectors is None:
            texts = [" / ".join(dict.fromkeys(humanize_name(n) for n in rb.names))
                     for rb in self._runbooks]
            self._name_vectors = np.asarray(self._embedder.embed(texts), dtype=np.float32) \
                if texts else np.zeros((0, 1), dtype=np.float32)
        if len(vectors) == 0 or len(self._name_vectors) == 0:
            return np.zeros(len(self._runbooks)), np.zeros(len(self._runbooks))
        sims = np.asarray(self._name_vectors @ vectors.T, dtype=np.float64)
        clauses = sims[:, 1:] if sims.shape[1] > 1 else sims
        return sims[:, 0], _stretch(clauses.max(axis=1))

    def _dense_views(
        self, sims: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Per runbook: the overview's cosine, and the mean of its two best chunks (a runbook
        that answers in several places is a better bet than one lucky chunk)."""
        n = len(self._runbooks)
        overview = np.zeros(n)
        top2 = np.zeros(n)
        if len(sims) == 0:
            return overview, top2
        overview[self._chunk_runbook[self._overview_rows]] = sims[self._overview_rows]
        for i, rb in enumerate(self._runbooks):
            best = sorted((sims[r] for r in rb.chunk_rows), reverse=True)[:2]
            top2[i] = sum(best) / 2 if len(best) == 2 else best[0]
        return overview, top2

    def _knows_subject(self, name: str) -> bool:
        parts = words(name)
        if not parts:
            return True
        first = parts[0]
        candidates = {*tokens(first), *(stem(x) for x in SYNONYMS.get(first, ()))}
        return not candidates or bool(candidates & self._vocabulary)

    def _name_scores(self, q: Query) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Per runbook: how well its names fit the alert's name (both ways) or the message,
        and how much of its best name the query's whole text covers (an alert's summary
        often says in other words what its name abbreviates)."""
        scores = np.zeros(len(self._runbooks))
        by_text = np.zeros(len(self._runbooks))
        text_tokens = set(tokens(f"{q.name} {q.text} {q.idioms}", expand=True))
        if q.name:
            query_tokens = set(tokens(q.name, expand=True))
            own = {t: {t, *(stem(x) for x in SYNONYMS.get(w, ()))}
                   for w in words(q.name) for t in tokens(w)}
        else:
            query_tokens = text_tokens
            own = {}
        if not text_tokens:
            return scores, by_text
        qw = {t: self._weight(t) for t in own}
        q_total = sum(qw.values())
        for i, rb in enumerate(self._runbooks):
            best = 0.0
            best_text = 0.0
            for name in rb.name_tokens:
                # Every word of a runbook's name counts in full: "too many" is part of what
                # KubeletTooManyPods means, and must not make it easy to cover.
                weights = {t: self._name_idf.get(t, 1.0) for t in name}
                total = sum(weights.values())
                if total <= 0:
                    continue
                covered = sum(w for t, w in weights.items() if t in query_tokens) / total
                best_text = max(best_text, sum(
                    w for t, w in weights.items() if t in text_tokens) / total)
                if q.name and q_total > 0:
                    # Both ways for an alert name: the runbook's words found in the
                    # alert's, and the alert's own words found in the runbook name.
                    back = sum(w for t, w in qw.items() if own[t] & name) / q_total
                    score = math.sqrt(covered * back)
                else:
                    score = covered * 0.8
                best = max(best, score)
            scores[i] = best
            by_text[i] = best_text
        return scores, by_text

    def _weight(self, token: str) -> float:
        return self._name_idf.get(token, 1.0) * (0.3 if token in WEAK else 1.0)

    def _dense_scores(
        self, vectors: NDArray[np.float32]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """(stretched score, raw best cosine) per runbook, and the cosine of every chunk,
        for the whole query (row 0 of ``vectors``)."""
        n = len(self._runbooks)
        if len(vectors) == 0:
            return np.zeros(n), np.zeros(n), np.zeros(len(self._chunks))
        sims = np.asarray(self._vectors @ vectors[0], dtype=np.float64)
        best = np.full(n, -1.0)
        overview = np.zeros(n)
        for row, sim in enumerate(sims):
            i = self._chunk_runbook[row]
            if self._chunks[row].kind == "overview":
                overview[i] = sim
            elif sim > best[i]:
                best[i] = sim
        best = np.where(best < 0, overview, best)
        raw = np.maximum(best, overview)
        combined = 0.5 * raw + 0.5 * overview
        return _stretch(combined), raw, sims

    def _best_rows(self, sims: NDArray[np.float64],
                   lexical: NDArray[np.float64]) -> NDArray[np.int64]:
        """Per runbook, the section that best answers the query (meaning and words both
        count); the overview only when the runbook has no other section."""
        fit = sims + 0.3 * lexical + self._section_prior
        rows = []
        for rb in self._runbooks:
            sections = [r for r in rb.chunk_rows if self._chunks[r].kind != "overview"]
            candidates = sections or rb.chunk_rows
            rows.append(max(candidates, key=lambda r: fit[r]))
        return np.array(rows, dtype=np.int64)

    def _lexical_scores(self, q: Query) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(score per runbook, score per chunk), both normalised to the query's best."""
        scores = np.zeros(len(self._runbooks))
        per_chunk = np.zeros(len(self._chunks))
        # Each word once: "full" said twice, expanded to "space fill" each time, must not
        # outweigh the one rare word ("conntrack") that decides. (Weighing label values and
        # synonym expansions at half was measured too: it cost abstention, gained nothing.)
        query_tokens = sorted(set(tokens(f"{q.text} {q.labels} {q.idioms}", expand=True)))
        if self._bm25 is None or not query_tokens:
            return scores, per_chunk
        chunk_scores = np.asarray(self._bm25.get_scores(query_tokens), dtype=np.float64)
        np.maximum.at(scores, self._chunk_runbook, chunk_scores)
        top = scores.max()
        if top <= 0:
            return scores, per_chunk
        # Normalised per query, damped so one rare shared word is not a strong signal.
        return (scores / top) * min(1.0, top / LEXICAL_FULL), chunk_scores / top


def _stretch(cosine: NDArray[np.float64]) -> NDArray[np.float64]:
    """MiniLM cosines of related ops texts sit in 0.2..0.8: stretched to 0..1."""
    return np.asarray(np.clip((cosine - 0.15) / 0.55, 0.0, 1.0), dtype=np.float64)


def open_runbook_index(*, settings: Settings, embedder: Embedder | None = None,
                       runbooks_dir: Path | None = None,
                       index_dir: Path | None = None) -> HybridRunbookIndex:
    """Load the indexed chunks from Chroma (as they are, no sync) into a HybridRunbookIndex."""
    from bot.adapters.chroma import collection_for, open_runbook_store
    from bot.embeddings import build_embedder

    embedder = embedder or build_embedder(settings)
    with open_runbook_store(settings, index_dir=index_dir, embedder_name=embedder.name,
                            collection=collection_for(settings, runbooks_dir)) as store:
        chunks, vectors = store.load()
    return HybridRunbookIndex(chunks=chunks, vectors=vectors, embedder=embedder)


def sync_and_open(*, settings: Settings, runbooks_dir: Path | None = None,
                  index_dir: Path | None = None, progress: Progress | None = None,
                  ) -> tuple[HybridRunbookIndex, IndexStats]:
    """Bring the index up to date with ``runbooks_dir`` (incrementally), then open it."""
    from bot.adapters.chroma import collection_for, open_runbook_store
    from bot.embeddings import build_embedder
    from bot.runbooks import sync_index

    embedder = build_embedder(settings)
    with open_runbook_store(settings, index_dir=index_dir, embedder_name=embedder.name,
                            collection=collection_for(settings, runbooks_dir)) as store:
        stats = sync_index(directory=runbooks_dir or settings.runbooks_dir, store=store,
                           embedder=embedder, progress=progress)
        chunks, vectors = store.load()
    return HybridRunbookIndex(chunks=chunks, vectors=vectors, embedder=embedder), stats


def build_runbook_index(settings: Settings) -> HybridRunbookIndex:
    """The RunbookIndex for the bot: the configured runbooks, synced into Chroma, loaded."""
    index, stats = sync_and_open(settings=settings)
    for problem in stats.problems:
        log.warning("runbook skipped: %s: %s", problem.path, problem.error)
    log.info("runbook index ready: %d runbooks (%d embedded, %d unchanged, %d removed)",
             index.size, stats.embedded, stats.unchanged, stats.removed)
    return index


def ranked(matches: Iterable[RunbookMatch]) -> list[dict[str, object]]:
    """The JSON shape of `hotwash runbooks match`."""
    return [{"id": m.id, "score": m.score, "title": m.title, "section": m.section}
            for m in matches]

