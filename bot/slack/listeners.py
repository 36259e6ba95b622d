"""Slack listeners, one ``register_*(app, room)`` per feature. Handlers stay thin: they
ack, then hand the work to intake / approval / the pipeline in a lazy listener."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App, BoltContext, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import select

from bot import approval
from bot.alerts import PayloadError
from bot.audit.models import IncidentRow
from bot.audit.store import incident_from_row
from bot.domain import Decision, DecisionAction, DraftKind, DraftStatus, Incident
from bot.slack import blocks
from bot.slack.middleware import RECEIVED_ID

if TYPE_CHECKING:
    from bot.slack.app import SlackRoom

log = logging.getLogger("hotwash.slack")

# Message subtypes that carry an alert or a symptom; edits, joins, deletions do not.
_ALERT_SUBTYPES = {None, "bot_message"}


def register(app: App, room: SlackRoom) -> None:
    """All Hotwash listeners."""
    register_alert_channels(app, room)
    register_command(app, room)
    register_draft_actions(app, room)


# --- alert channels ---------------------------------------------------------------------


def is_alert_message(event: Mapping[str, Any], alert_channels: list[str]) -> bool:
    """A top-level message (not a thread reply, edit or join) in a configured channel."""
    if event.get("channel") not in alert_channels:
        return False
    if event.get("subtype") not in _ALERT_SUBTYPES:
        return False
    thread_ts = event.get("thread_ts")
    return thread_ts is None or thread_ts == event.get("ts")


def register_alert_channels(app: App, room: SlackRoom) -> None:
    """Messages in alert channels become incidents; new incidents get a draft in-thread."""
    channels = list(room.services.settings.alert_channels)

    def ack_message(ack: Ack) -> None:
        # Every message event is acked (an unanswered event is retried by Slack).
        ack()

    def handle_message(event: dict[str, Any], context: BoltContext) -> None:
        received_id = int(context[RECEIVED_ID])
        store = room.services.store
        if not is_alert_message(event, channels):
            store.mark_received(received_id=received_id, status="ignored")
            return
        try:
            room.intake.slack_message(event=event, received_id=received_id)
        except PayloadError as exc:
            log.info("message %s in %s is not an alert: %s", event.get("ts"),
                     event.get("channel"), exc)

    app.event("message")(ack=ack_message, lazy=[handle_message])


# --- /hotwash -----------------------------------------------------------------------------

USAGE = {
    "triage": "`/hotwash triage <symptom text or a pasted alert>`, "
              "e.g. `/hotwash triage checkout returns 500s since the deploy`",
    "runbook": "`/hotwash runbook <query>`, e.g. `/hotwash runbook db connection pool`",
    "postmortem": "`/hotwash postmortem` (in an incident thread or channel)",
    "status": "`/hotwash status`",
    "help": "`/hotwash help`",
}


@dataclass(frozen=True)
class Command:
    name: str
    arg: str


def parse_command(text: str) -> Command | str:
    """The subcommand and its argument, or a message saying what was expected."""
    name, _, arg = text.strip().partition(" ")
    name, arg = name.lower(), arg.strip()
    if not name:
        return blocks.HELP
    if name not in USAGE:
        return f"Unknown subcommand `{name}`.\n{blocks.HELP}"
    if name in ("triage", "runbook") and not arg:
        return f"`/hotwash {name}` needs some text. Usage: {USAGE[name]}"
    return Command(name=name, arg=arg)


def register_command(app: App, room: SlackRoom) -> None:
    """`/hotwash triage|runbook|postmortem|status|help`."""

    def ack_command(ack: Ack, command: dict[str, Any]) -> None:
        parsed = parse_command(str(command.get("text") or ""))
        if isinstance(parsed, str):
            ack(text=parsed)  # ephemeral by default
        elif parsed.name == "help":
            ack(text=blocks.HELP)
        else:
            ack(text=f":hourglass_flowing_sand: Working on `{parsed.name}`…")

    def run_command(command: dict[str, Any], context: BoltContext, respond: Respond) -> None:
        parsed = parse_command(str(command.get("text") or ""))
        if isinstance(parsed, str) or parsed.name == "help":
            return
        try:
            handler = _COMMANDS[parsed.name]
            handler(room, parsed, command, context, respond)
        except Exception:  # the user must hear back whatever failed
            log.exception("/hotwash %s failed", parsed.name)
            respond(text=f":warning: `/hotwash {parsed.name}` failed; the request is "
                         "recorded and the logs say why.", response_type="ephemeral")

    app.command("/hotwash")(ack=ack_command, lazy=[run_command])


def _triage_command(room: SlackRoom, cmd: Command, command: dict[str, Any],
                    context: BoltContext, respond: Respond) -> None:
    intake = room.intake
    received_id = int(context[RECEIVED_ID])
    channel = str(command.get("channel_id") or "") or None
    try:
        alerts = intake.parse(body=cmd.arg, received_id=received_id)
    except PayloadError as exc:
        respond(text=f"Could not read that as an alert or symptom ({exc}). "
                     f"Usage: {USAGE['triage']}", response_type="ephemeral")
        return
    alerts = [a.model_copy(update={"channel": channel, "thread_ts": None}) for a in alerts]
    accepted = intake.group(received_id=received_id, alerts=alerts)
    for alert in accepted.skipped:
        respond(text=f"*{alert.name}* is a resolved notification: nothing to triage.",
                response_type="ephemeral")
    for grouped in accepted.grouped:
        incident = grouped.incident
        if not grouped.created:
            where = _thread_link(incident)
            respond(text=f"This matches open incident #{incident.id} *{incident.title}* "
                         f"({incident.alert_count} alerts){where}; its draft is there.",
                    response_type="ephemeral")
            continue
        triaged = intake.triage_and_post(alert=grouped.alert, incident=incident,
                                         channel=channel, thread_ts=None)
        if triaged is None:
            respond(text=f":warning: Triage of *{grouped.alert.name}* failed; incident "
                         f"#{incident.id} is recorded.", response_type="ephemeral")
        elif triaged.ts is None:
            # We could not post in this channel (e.g. the bot is not a member): show the
            # draft to the requester only; its buttons still work.
            text, body = blocks.draft_message(triaged.draft, url_base=room.url_base)
            respond(text=text, blocks=body, response_type="ephemeral")
        else:
            respond(text=f"Draft #{triaged.draft.id} for incident #{incident.id} is in the "
                         "thread above, pending approval.", response_type="ephemeral")


def _thread_link(incident: Incident) -> str:
    if incident.channel and incident.thread_ts:
        return f" in <#{incident.channel}>"
    return ""


def _runbook_command(room: SlackRoom, cmd: Command, command: dict[str, Any],
                     context: BoltContext, respond: Respond) -> None:
    matches = room.services.runbooks.match(cmd.arg, limit=3)
    text, body = blocks.runbook_results(cmd.arg, matches, url_base=room.url_base)
    respond(text=text, blocks=body, response_type="ephemeral")


def _status_command(room: SlackRoom, cmd: Command, command: dict[str, Any],
                    context: BoltContext, respond: Respond) -> None:
    store = room.services.store
    with store.read() as session:
        rows = session.scalars(select(IncidentRow).where(IncidentRow.status == "open")
                               .order_by(IncidentRow.id.desc()).limit(20))
        incidents = [incident_from_row(row) for row in rows]
    drafts = store.list_drafts(status=DraftStatus.PENDING, limit=20)
    text, body = blocks.status_message(incidents, drafts)
    respond(text=text, blocks=body, response_type="ephemeral")


def _postmortem_command(room: SlackRoom, cmd: Command, command: dict[str, Any],
                        context: BoltContext, respond: Respond) -> None:
    if room.postmortem is None:
        respond(text=":construction: Postmortem drafts are not available yet in this "
                     "Hotwash build. Triage drafts are: `/hotwash triage <text>`.",
                response_type="ephemeral")
        return
    room.postmortem(room=room, command=command, respond=respond)


_COMMANDS: dict[str, Callable[[SlackRoom, Command, dict[str, Any], BoltContext, Respond],
                              None]] = {
    "triage": _triage_command,
    "runbook": _runbook_command,
    "status": _status_command,
    "postmortem": _postmortem_command,
}


# --- draft buttons and modals -------------------------------------------------------------


@dataclass(frozen=True)
class Click:
    """Who clicked which draft button, on which message."""

    user: str
    draft_id: int
    channel: str | None
    ts: str | None
    ephemeral: bool

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Click:
        action = body["actions"][0]
        container = body.get("container") or {}
        channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
        ts = container.get("message_ts") or (body.get("message") or {}).get("ts")
        return cls(user=str(body["user"]["id"]), draft_id=int(action["value"]),
                   channel=channel, ts=ts, ephemeral=bool(container.get("is_ephemeral")))

    @property
    def ref(self) -> blocks.DraftRef:
        return blocks.DraftRef(draft_id=self.draft_id, channel=self.channel, ts=self.ts)


def register_draft_actions(app: App, room: SlackRoom) -> None:
    """Approve / Edit / Reject / Regenerate, and the Edit and Reject modals."""
    store = room.services.store

    def ack_only(ack: Ack) -> None:
        ack()

    def refuse(client: WebClient, click: Click, verb: str) -> None:
        """Tell a non-approver no, privately; the refusal is audited."""
        reason = room.approvers.check(click.user) or "not an approver"
        store.record_event(type="draft.refused", subject=f"draft:{click.draft_id}",
                           payload={"draft_id": click.draft_id, "actor": click.user,
                                    "action": verb, "reason": reason, "via": "slack"})
        _ephemeral(client, click, blocks.refusal(verb))

    def show(client: WebClient, respond: Respond | None, *, draft_id: int,
             channel: str | None, ts: str | None, ephemeral: bool = False,
             decision: Decision | None = None) -> None:
        draft = store.get_draft(draft_id=draft_id)
        text, body = blocks.draft_message(draft, url_base=room.url_base, decision=decision)
        try:
            if ephemeral and respond is not None:
                respond(text=text, blocks=body, replace_original=True)
            elif channel and ts:
                client.chat_update(channel=channel, ts=ts, text=text, blocks=body)
        except SlackApiError as exc:  # the decision is stored and audited either way
            log.warning("could not update draft %s in Slack: %s", draft_id,
                        exc.response.get("error"))

    def decide(client: WebClient, respond: Respond | None, click: Click, verb: str,
               act: Callable[[], Decision]) -> None:
        try:
            decision = act()
        except approval.NotAllowed:
            _ephemeral(client, click, blocks.refusal(verb))  # approval audited the refusal
            return
        except approval.ApprovalError as exc:
            _ephemeral(client, click, f":information_source: {exc}")
            return
        if decision.action is not DecisionAction.REJECT and \
                store.get_draft(draft_id=click.draft_id).kind is DraftKind.POSTMORTEM:
            from bot.postmortem import record_edits  # per-section edit counts, audited

            record_edits(store=store, draft_id=click.draft_id)
        show(client, respond, draft_id=click.draft_id, channel=click.channel, ts=click.ts,
             ephemeral=click.ephemeral, decision=decision)

    # Approve: ack at once, decide lazily.
    def approve_draft(body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        click = Click.from_body(body)
        decide(client, respond, click, "approve", lambda: approval.approve(
            store=store, draft_id=click.draft_id, actor=click.user,
            approvers=room.approvers))

    app.action(blocks.APPROVE)(ack=ack_only, lazy=[approve_draft])

    # Edit and Reject open a modal: views.open must use the trigger_id within 3 s, so it
    # runs in the ack step; a non-approver is refused before any modal opens.
    def open_modal(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        click = Click.from_body(body)
        verb = "edit" if body["actions"][0]["action_id"] == blocks.EDIT else "reject"
        if not room.approvers.allows(click.user):
            refuse(client, click, verb)
            return
        try:
            draft = store.get_draft(draft_id=click.draft_id)
        except KeyError:
            _ephemeral(client, click, f"Draft #{click.draft_id} no longer exists.")
            return
        if draft.status is not DraftStatus.PENDING:
            _ephemeral(client, click, f"Draft #{draft.id} is {draft.status.value}; only "
                                      "pending drafts can be edited or rejected.")
            return
        view = blocks.edit_modal(draft, ref=click.ref) if verb == "edit" \
            else blocks.reject_modal(draft, ref=click.ref)
        client.views_open(trigger_id=body["trigger_id"], view=view)

    app.action(blocks.EDIT)(open_modal)
    app.action(blocks.REJECT)(open_modal)

    def _view_user(body: Mapping[str, Any]) -> str:
        return str(body["user"]["id"])

    def ack_edit(ack: Ack, view: dict[str, Any]) -> None:
        text = _edited_text(view)
        if not text.strip():
            first = (blocks.edit_block_ids(view) or [blocks.EDIT_BLOCK])[0]
            ack(response_action="errors", errors={first: "The draft text cannot be empty."})
            return
        ack()

    def edit_submitted(body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        ref = blocks.DraftRef.loads(view["private_metadata"])
        user = _view_user(body)
        text = _edited_text(view)
        if not text.strip():
            return  # Bolt runs lazy listeners even when the ack refused the submission
        click = Click(user=user, draft_id=ref.draft_id, channel=ref.channel, ts=ref.ts,
                      ephemeral=False)
        decide(client, None, click, "edit", lambda: approval.approve(
            store=store, draft_id=ref.draft_id, actor=user, approvers=room.approvers,
            edited_markdown=text))

    app.view(blocks.EDIT_MODAL)(ack=ack_edit, lazy=[edit_submitted])

    def ack_reject(ack: Ack, view: dict[str, Any]) -> None:
        reason = _view_value(view, blocks.REASON_BLOCK, blocks.REASON_INPUT)
        if len(reason.strip()) < 3:
            ack(response_action="errors",
                errors={blocks.REASON_BLOCK: "Say in a few words why the draft is wrong."})
            return
        ack()

    def reject_submitted(body: dict[str, Any], view: dict[str, Any],
                         client: WebClient) -> None:
        ref = blocks.DraftRef.loads(view["private_metadata"])
        user = _view_user(body)
        reason = _view_value(view, blocks.REASON_BLOCK, blocks.REASON_INPUT).strip()
        if len(reason) < 3:
            return  # refused in the ack; lazy listeners run regardless
        click = Click(user=user, draft_id=ref.draft_id, channel=ref.channel, ts=ref.ts,
                      ephemeral=False)
        decide(client, None, click, "reject", lambda: approval.reject(
            store=store, draft_id=ref.draft_id, actor=user, reason=reason,
            approvers=room.approvers))

    app.view(blocks.REJECT_MODAL)(ack=ack_reject, lazy=[reject_submitted])

    # Regenerate: a new draft from the incident's newest firing alert (its latest values and
    # evidence window) replaces this one in place.
    def regenerate(body: dict[str, Any], client: WebClient, respond: Respond) -> None:
        click = Click.from_body(body)
        if not room.approvers.allows(click.user):
            refuse(client, click, "regenerate")
            return
        try:
            old = store.get_draft(draft_id=click.draft_id)
        except KeyError:
            _ephemeral(client, click, f"Draft #{click.draft_id} no longer exists.")
            return
        if old.kind is not DraftKind.TRIAGE:
            _ephemeral(client, click, f"Draft #{old.id} is a {old.kind.value} draft: run "
                                      f"`/hotwash {old.kind.value}` again for a new one.")
            return
        if old.status is not DraftStatus.PENDING or old.incident_id is None:
            _ephemeral(client, click, f"Draft #{old.id} is {old.status.value}; only a "
                                      "pending incident draft can be regenerated.")
            return
        incident = store.get_incident(incident_id=old.incident_id)
        alerts = store.alerts_for(incident_id=incident.id)
        if not alerts:
            _ephemeral(client, click, f"Incident #{incident.id} has no stored alert.")
            return
        store.record_event(type="draft.regenerate", subject=f"draft:{old.id}",
                           payload={"draft_id": old.id, "actor": click.user, "via": "slack"})
        latest = next((a for a in reversed(alerts) if a.status == "firing"), alerts[-1])
        draft = room.intake.triage(alert=latest, services=room.services, incident=incident)
        new_id = draft.id if draft.id is not None else click.draft_id
        if new_id == click.draft_id:
            # The pipeline's cache answered: same alert, evidence, prompt and model.
            _ephemeral(client, click, f"Nothing changed since draft #{new_id} was written "
                                      "(same evidence, prompt and model), so it stays.")
            return
        if click.channel and click.ts:
            store.set_draft_message(draft_id=new_id, channel=click.channel, message_ts=click.ts)
        show(client, respond, draft_id=new_id, channel=click.channel, ts=click.ts,
             ephemeral=click.ephemeral)

    app.action(blocks.REGENERATE)(ack=ack_only, lazy=[regenerate])


def _view_value(view: Mapping[str, Any], block_id: str, action_id: str) -> str:
    values = (view.get("state") or {}).get("values") or {}
    value = (values.get(block_id) or {}).get(action_id) or {}
    return str(value.get("value") or "")


def _edited_text(view: Mapping[str, Any]) -> str:
    """The edit modal's pieces joined back together, in order."""
    return "\n".join(_view_value(view, block_id, blocks.EDIT_INPUT)
                     for block_id in blocks.edit_block_ids(view)).rstrip("\n")


def _ephemeral(client: WebClient, click: Click, text: str) -> None:
    if not click.channel:
        return
    try:
        client.chat_postEphemeral(channel=click.channel, user=click.user, text=text)
    except SlackApiError as exc:
        log.warning("could not tell %s: %s", click.user, exc.response.get("error"))
