"""`hotwash demo` runs start to finish on a fresh embedded database."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from bot.audit.store import build_store
from bot.domain import DecisionAction, DraftStatus
from bot.settings import load_settings

runner = CliRunner()


def test_demo_walks_the_whole_road_and_verifies(tmp_path: Path) -> None:
    from bot.cli import app

    demo_dir = tmp_path / "demo"
    for _ in range(2):  # the second run starts from scratch again
        result = runner.invoke(app, ["demo", "--dir", str(demo_dir)])
        assert result.exit_code == 0, result.output
        assert "refused: U0BYSTANDER is not an approver" in result.output
        assert "audit chain OK: 7 events" in result.output
    store = build_store(load_settings(data_dir=demo_dir, auto_migrate=False))
    try:
        (draft,) = store.list_drafts()
        assert draft.status is DraftStatus.APPROVED and draft.id is not None
        decision = store.get_decision(draft_id=draft.id)
        assert decision is not None and decision.action is DecisionAction.EDIT_APPROVE
        assert decision.diff and "+**On-call decision:** roll back v2.14.0 now" in decision.diff
        # The draft came from the real road: the new pool-timeout template and the
        # pool-exhaustion runbook are cited, written without a model.
        assert draft.model == "evidence-only"
        assert "HikariPool-1 - Connection is not available" in draft.markdown
        assert "db-connection-pool-exhaustion" in draft.markdown
        assert draft.grounding_score == 1.0
        assert store.get_received(received_id=1).body == (
            Path(__file__).resolve().parents[1] / "samples/alerts/checkout-5xx.json"
        ).read_bytes()
        assert store.verify().ok
    finally:
        store.close()


def test_demo_never_deletes_a_folder_it_did_not_create(tmp_path: Path) -> None:
    from bot.cli import app

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    result = runner.invoke(app, ["demo", "--dir", str(precious)])
    assert result.exit_code == 1 and "refusing to delete it" in result.output
    assert (precious / "notes.txt").read_text() == "keep me"
