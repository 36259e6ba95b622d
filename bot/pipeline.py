"""triage(alert) -> Draft: the road from an alert to a stored, grounded, pending draft.

gather evidence -> fit the token budget -> render prompts -> cache lookup -> primary model
-> secondary model -> evidence-only drafter -> grounding check -> store pending.

Only ports are used (``services``). A failing dependency never raises out of here: a dead
log source or runbook index becomes a gap in the evidence, a failing model falls back down
the chain, and a failing store returns the unsaved draft with a note. Every degradation is
a note on the draft, so the approver sees what the draft was written without.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot import metrics, telemetry
from bot.context import evidence_hash, fit_budget, gather
from bot.domain import Alert, Draft, DraftKind, Evidence, Incident
from bot.drafting import (
    Author,
    OutputError,
    TriageOutput,
    draft_content,
    draft_from_evidence,
    parse_triage,
    render_markdown,
    triage_json_schema,
)
from bot.grounding import ground
from bot.ports import ChatMessage, ChatModel, ChatRequest, ModelError
from bot.prompts import RenderedPrompt, render
from bot.redaction import build_redactor
from bot.settings import Settings
from bot.tokens import count_tokens

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

SYSTEM_TEMPLATE = "triage_system.md.j2"
USER_TEMPLATE = "triage_user.md.j2"
REPAIR_TEMPLATE = "triage_repair.md.j2"
EVIDENCE_ONLY = "evidence-only"


@dataclass
class _Usage:
    """Tokens and cost of every model call made for one draft, failed ones included."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    model_ms: float = 0.0
    calls: list[dict[str, Any]] = field(default_factory=list)

    def add(self, model: str, prompt: int, completion: int, ms: float,
            prices: dict[str, tuple[float, float]]) -> float:
        price_in, price_out = prices.get(model, (0.0, 0.0))
        cost = (prompt * price_in + completion * price_out) / 1_000_000
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self.cost_usd += cost
        self.model_ms += ms
        return cost


@dataclass(frozen=True)
class TriagePrompt:
    """The rendered prompts for one alert and the hashes that identify them."""

    system: RenderedPrompt
    user: RenderedPrompt
    estimated_tokens: int
    ids: tuple[str, ...] = ()  # the evidence ids the model may cite

    @property
    def template(self) -> str:
        return f"{self.system.template}+{self.user.template}"

    @property
    def hash(self) -> str:
        """Template version: hash over both templates (and their partials)."""
        return hashlib.sha256(f"{self.system.sha256}:{self.user.sha256}".encode()).hexdigest()


def build_prompt(evidence: Evidence) -> TriagePrompt:
    """Render the system and user prompts for already-budgeted ``evidence``."""
    system = render(SYSTEM_TEMPLATE)
    user = render(USER_TEMPLATE, items=evidence.items, gaps=evidence.gaps,
                  omitted=int(evidence.stats.get("omitted_for_budget", 0)))
    return TriagePrompt(system=system, user=user,
                        estimated_tokens=count_tokens(system.text) + count_tokens(user.text),
                        ids=tuple(item.id for item in evidence.items))


def decoding_params(settings: Settings) -> dict[str, Any]:
    """Decoding parameters recorded on every draft (enough to replay it)."""
    return {"temperature": settings.llm_temperature, "max_tokens": settings.llm_max_tokens,
            "seed": settings.llm_seed}


def cache_key(*, fingerprint: str, evidence_sha: str, prompt_sha: str, model: str,
              params: dict[str, Any]) -> str:
    """Same alert series + same evidence + same prompt version + same model and params."""
    raw = json.dumps([fingerprint, evidence_sha, prompt_sha, model, params], sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()


def _error_kind(exc: Exception) -> str:
    text = str(exc).lower()
    for needle, kind in (("timed out", "timeout"), ("429", "rate_limited"),
                         ("connection", "connection"), ("http 5", "http_5xx"),
                         ("json", "invalid_output"), ("schema", "invalid_output")):
        if needle in text:
            return kind
    return "invalid_output" if isinstance(exc, OutputError) else "error"


def ask_model(*, model: ChatModel, prompt: TriagePrompt, settings: Settings,
              usage: _Usage) -> TriageOutput:
    """One model's answer, parsed; one repair round when it is not valid output.

    Raises ModelError or OutputError for the caller to fall back.
    """
    messages = (ChatMessage(role="system", content=prompt.system.text),
                ChatMessage(role="user", content=prompt.user.text))
    request = ChatRequest(messages=messages, json_schema=triage_json_schema(prompt.ids),
                          schema_name="triage_draft", max_tokens=settings.llm_max_tokens,
                          temperature=settings.llm_temperature, seed=settings.llm_seed)
    response = _call(model, request, settings, usage, prompt)
    try:
        return parse_triage(response.text)
    except OutputError as first:
        if response.raw.get("finish_reason") == "length":
            # Cut off at max_tokens: a repair round would spend the same budget again on
            # the same loop, so fall back at once.
            raise OutputError(f"answer cut off at max_tokens ({request.max_tokens}); "
                              "not repairing") from None
        log.info("model %s gave unusable output (%s); asking for a repair", model.name, first)
        repair = render(REPAIR_TEMPLATE, error=str(first))
        retry = request.model_copy(update={"messages": (
            *messages,
            ChatMessage(role="assistant", content=response.text[:4000]),
            ChatMessage(role="user", content=repair.text),
        )})
        second = _call(model, retry, settings, usage, prompt)
        try:
            return parse_triage(second.text)
        except OutputError as exc:
            raise OutputError(f"still invalid after one repair: {exc}") from None


def _call(model: ChatModel, request: ChatRequest, settings: Settings,
          usage: _Usage, prompt: TriagePrompt | None = None) -> Any:
    started = time.perf_counter()
    prompt_hash = prompt.hash if prompt is not None else None
    try:
        with telemetry.stage("model", model=model.name):
            response = model.complete(request)
    except ModelError as exc:
        metrics.record_model_call(model=model.name, seconds=time.perf_counter() - started,
                                  error=_error_kind(exc))
        telemetry.log_model_call(model=model.name, model_version=None, prompt_hash=prompt_hash,
                                 latency_ms=(time.perf_counter() - started) * 1000,
                                 error=_error_kind(exc))
        raise
    telemetry.log_model_call(model=model.name, model_version=response.model,
                             prompt_hash=prompt_hash,
                             prompt_template=prompt.template if prompt is not None else None,
                             prompt_tokens=response.prompt_tokens,
                             completion_tokens=response.completion_tokens,
                             latency_ms=response.latency_ms)
    cost = usage.add(model.name, response.prompt_tokens, response.completion_tokens,
                     response.latency_ms, settings.llm_prices)
    usage.calls.append({"model": model.name, "prompt_tokens": response.prompt_tokens,
                        "completion_tokens": response.completion_tokens,
                        "latency_ms": round(response.latency_ms, 1),
                        "schema_mode": response.raw.get("schema_mode")})
    metrics.record_model_call(model=model.name, seconds=response.latency_ms / 1000,
                              prompt_tokens=response.prompt_tokens,
                              completion_tokens=response.completion_tokens, cost_usd=cost)
    return response


def triage(*, alert: Alert, services: Services, incident: Incident | None = None) -> Draft:
    """Draft a grounded, cited triage for ``alert`` and store it pending approval.

    Returns the stored draft (with its id), or a cached identical draft. Never raises for a
    failing dependency.
    """
    settings = services.settings
    started = time.perf_counter()
    notes: list[str] = []
    redactor = build_redactor(settings)

    memo = services.evidence_cache
    full = memo.get(alert) if memo is not None else None
    if full is None:
        with telemetry.stage("evidence") as evidence_stage:
            full = gather(alert=alert, logs=services.logs, runbooks=services.runbooks,
                          redactor=redactor)
            if full.gaps:
                evidence_stage.fail(f"{len(full.gaps)} evidence gap(s)")
        metrics.record_redactions(where="evidence", count=full.redactions)
        if memo is not None:
            memo.put(alert, full)
    evidence = fit_budget(full, budget_tokens=settings.llm_context_tokens)
    omitted = int(evidence.stats.get("omitted_for_budget", 0))
    if omitted:
        notes.append(f"{omitted} lower-priority evidence item(s) were left out to fit the "
                     f"{settings.llm_context_tokens}-token context budget.")

    with telemetry.stage("prompt"):
        prompt = build_prompt(evidence)
    params = decoding_params(settings)
    evidence_sha = evidence_hash(evidence)

    models = list(services.models)
    channel = alert.channel
    # Any model of the chain that already answered this exact prompt is as good as a call.
    for candidate in models:
        key = cache_key(fingerprint=alert.fingerprint, evidence_sha=evidence_sha,
                        prompt_sha=prompt.hash, model=candidate.name, params=params)
        cached = _cached(services, key)
        if cached is not None:
            return cached
    quota = services.quota
    if models and quota is not None and quota.exhausted(channel=channel):
        notes.append(f"The daily token quota for this channel ({quota.limit} tokens) is spent; "
                     "this draft was written without a model.")
        metrics.record_quota_refusal()
        models = []

    usage = _Usage()
    output: TriageOutput | None = None
    used: ChatModel | None = None
    chain = [m.name for m in models] + [EVIDENCE_ONLY]
    for position, model in enumerate(models):
        try:
            output = ask_model(model=model, prompt=prompt, settings=settings, usage=usage)
        except (ModelError, OutputError) as exc:
            nxt = chain[position + 1]
            notes.append(f"Model {model.name} failed ({exc}); fell back to {nxt}.")
            metrics.record_fallback(from_model=model.name, to_model=nxt,
                                    reason=_error_kind(exc))
            continue
        except Exception as exc:  # an adapter bug must not cost the draft either
            log.exception("model %s raised unexpectedly", model.name)
            nxt = chain[position + 1]
            notes.append(f"Model {model.name} failed ({type(exc).__name__}); fell back to {nxt}.")
            metrics.record_fallback(from_model=model.name, to_model=nxt, reason="error")
            continue
        used = model
        break
    if output is None:
        output = draft_from_evidence(evidence)
        if not services.models:
            notes.append("No model is configured; this draft was written from the evidence "
                         "alone.")

    with telemetry.stage("grounding"):
        report = ground(output, evidence, redactor=redactor)
    if report.secrets_redacted:
        metrics.record_safety_hit(rule="secret_in_output", count=report.secrets_redacted)
    if report.invalid_ids:
        metrics.record_grounding_failure(reason="unknown_ref")
    if report.unsupported:
        metrics.record_grounding_failure(reason="uncited_claim")
    notes.extend(report.notes())

    author: Author = "model" if used is not None else "evidence-only"
    content = draft_content(report.output, evidence, author=author)
    model_name = used.name if used is not None else EVIDENCE_ONLY
    draft_key = (cache_key(fingerprint=alert.fingerprint, evidence_sha=evidence_sha,
                     prompt_sha=prompt.hash, model=used.name, params=params)
           if used is not None else None)
    latency_ms = (time.perf_counter() - started) * 1000
    tokens = usage.prompt_tokens + usage.completion_tokens
    if quota is not None and tokens:
        metrics.record_quota_use(ratio=quota.spend(channel=channel, tokens=tokens))
    draft = Draft(
        kind=DraftKind.TRIAGE,
        incident_id=incident.id if incident is not None else None,
        content=content,
        markdown=render_markdown(content, notes=tuple(notes), grounding_score=report.score),
        model=model_name,
        prompt_template=prompt.template,
        prompt_hash=prompt.hash,
        params={**params, "templates": {prompt.system.template: prompt.system.sha256,
                                        prompt.user.template: prompt.user.sha256},
                "evidence_sha256": evidence_sha,
                "prompt_tokens_estimate": prompt.estimated_tokens,
                "context_budget_tokens": settings.llm_context_tokens,
                "evidence_tokens": evidence.stats.get("evidence_tokens"),
                "model_calls": usage.calls,
                "chain": chain},
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cost_usd=round(usage.cost_usd, 6),
        latency_ms=round(latency_ms, 1),
        evidence_refs=tuple(item.id for item in evidence.items),
        grounding_score=report.score,
        cache_key=draft_key,
        notes=tuple(notes),
        channel=alert.channel,
    )
    # End-to-end latency (alert received -> draft posted) is recorded where the draft is
    # posted (bot.intake), so it is counted once and includes the Slack post.
    return _store(services, draft)


def _cached(services: Services, key: str) -> Draft | None:
    try:
        cached = services.store.cached_draft(cache_key=key)
    except Exception as exc:  # a cache is an optimisation: a failing store only costs a call
        log.warning("draft cache lookup failed: %s", exc)
        return None
    metrics.record_cache(hit=cached is not None)
    return cached


def _store(services: Services, draft: Draft) -> Draft:
    try:
        with telemetry.stage("store"):  # a raise marks the stage failed
            stored = services.store.save_draft(draft=draft)
    except Exception as exc:
        log.exception("could not store the triage draft")
        metrics.record_backend_error(backend="database", operation="save_draft")
        note = f"This draft could not be stored ({type(exc).__name__}); it has no id yet."
        return draft.model_copy(update={
            "notes": (*draft.notes, note),
            "markdown": draft.markdown + f"\n- {note}\n",
        })
    metrics.record_draft(kind="triage", status="pending")
    return stored
