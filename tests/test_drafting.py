"""The evidence-only drafter turns runbook sections into steps an engineer can follow."""

from __future__ import annotations

from bot.domain import EvidenceItem, EvidenceKind
from bot.drafting import runbook_steps

SECTION = """\
- Roll back the deploy if it started the errors (fastest, safest).
- Otherwise raise `maximumPoolSize` only if the database has headroom
  (`max_connections` minus all pools of all replicas).
- Check the pods: `kubectl -n shop get pods -l app=checkout`

Some closing prose that is not a step.
"""


def _item(text: str) -> EvidenceItem:
    return EvidenceItem(id="R1", kind=EvidenceKind.RUNBOOK, title="Pool exhaustion > Mitigation",
                        text=text, source="runbook:db-pool")


def test_wrapped_list_items_keep_their_words_and_names() -> None:
    steps = runbook_steps(_item(SECTION))
    assert [s.cites for s in steps] == [["R1"]] * 3
    assert steps[1].step == ("Otherwise raise `maximumPoolSize` only if the database has "
                             "headroom (`max_connections` minus all pools of all replicas).")
    # A config name in backticks is prose, not a command to suggest.
    assert steps[1].command is None


def test_inline_shell_command_is_suggested_not_run() -> None:
    steps = runbook_steps(_item(SECTION))
    assert steps[2].command == "kubectl -n shop get pods -l app=checkout"


def test_section_without_a_list_becomes_one_follow_step() -> None:
    [step] = runbook_steps(_item("Call the database team and share the pool graphs.\n"))
    assert step.step.startswith("Follow runbook section 'Pool exhaustion > Mitigation'")
