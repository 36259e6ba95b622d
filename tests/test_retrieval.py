"""Hybrid runbook retrieval and the `hotwash runbooks` commands, on a small corpus written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.domain import Alert, AlertSource
from bot.retrieval import HybridRunbookIndex, Query, build_runbook_index, sync_and_open
from bot.settings import Settings

runner = CliRunner()

CORPUS = {
    "kubernetes/KubePodCrashLooping.md": """---
title: Kube Pod Crash Looping
---
# KubePodCrashLooping

## Meaning

A container in the pod keeps dying and the kubelet restarts it with back-off.

## Diagnosis

Read the logs of the previous container and the pod events; look for failing probes.

## Mitigation

Fix the configuration or roll back the release.
""",
    "node/NodeFilesystemAlmostOutOfSpace.md": """---
title: Node Filesystem Almost Out Of Space
---
# NodeFilesystemAlmostOutOfSpace

## Meaning

A filesystem on the machine has less than 5% space left.

## Diagnosis

Find the biggest directories and files; check log rotation.

## Mitigation

Remove old files or grow the volume.
""",
    "kubernetes/KubeletClientCertificateExpiration.md": """---
title: Kubelet Client Certificate Expiration
---
# KubeletClientCertificateExpiration

## Meaning

The client certificate the kubelet uses will expire soon or has expired.

## Mitigation

Approve pending certificate signing requests and check rotation.
""",
    "etcd/etcdNoLeader.md": """---
title: etcd No Leader
---
# etcdNoLeader

## Meaning

The etcd cluster has no elected leader; writes cannot be committed.

## Diagnosis

Check network partitions between members and member health.
""",
    "app/db-connection-pool-exhaustion.md": """---
title: Database connection pool exhaustion
alerts: [CheckoutHighErrorRate]
services: [checkout]
---
# Database connection pool exhaustion

## Meaning

Requests wait for a database connection and time out; callers see HTTP 500 and 503.

## Mitigation

Roll back the deploy or raise the pool size when the database has headroom.
""",
}

AM_BODY = {
    "version": "4", "status": "firing", "receiver": "hotwash",
    "groupLabels": {"alertname": "HostOutOfDiskSpace"},
    "commonLabels": {"alertname": "HostOutOfDiskSpace", "instance": "db-2:9100",
                     "severity": "warning", "job": "node"},
    "commonAnnotations": {"summary": "Host out of disk space (< 10% left)"},
    "externalURL": "http://alertmanager:9093", "groupKey": "{}:{alertname=\"x\"}",
    "alerts": [
        {"status": "firing", "labels": {"alertname": "HostOutOfDiskSpace", "mountpoint": "/"},
         "annotations": {}, "startsAt": "2026-11-28T10:00:00Z", "endsAt": "",
         "fingerprint": "a1"},
        {"status": "firing", "labels": {"alertname": "HostOutOfDiskSpace", "mountpoint": "/var"},
         "annotations": {}, "startsAt": "2026-11-28T10:00:00Z", "endsAt": "",
         "fingerprint": "a2"},
    ],
}
SLACK_EVENT = {"type": "message", "channel": "C1", "user": "U1", "ts": "1795874800.000100",
               "text": "pods in payments keep restarting, status says CrashLoopBackOff"}
SLACK_CALLBACK = {"type": "event_callback", "team_id": "T1", "event_id": "Ev1",
                  "event": {**SLACK_EVENT, "text": "etcd lost its leader again, "
                                                   "apiserver writes are failing"}}
OFF_TOPIC = "can someone review my pull request for the new billing page?"


def write_corpus(root: Path) -> Path:
    for rel, text in CORPUS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "runbooks")


@pytest.fixture(scope="module")
def index(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> HybridRunbookIndex:
    data = tmp_path_factory.mktemp("data")
    built, stats = sync_and_open(settings=Settings(data_dir=data), runbooks_dir=corpus_dir)
    assert stats.embedded == len(CORPUS)
    return built


def alert(name: str, summary: str = "", **labels: str) -> Alert:
    return Alert(name=name, source=AlertSource.ALERTMANAGER, summary=summary,
                 labels={"alertname": name, **labels}, fingerprint=name)


def test_exact_alert_name_ranks_its_runbook_first_with_a_high_score(
    index: HybridRunbookIndex,
) -> None:
    matches = index.match(alert("KubePodCrashLooping", "Pod shop/api is crash looping"))
    assert matches[0].id == "kubernetes/KubePodCrashLooping"
    assert matches[0].title == "Kube Pod Crash Looping"
    assert matches[0].score > 0.8


def test_another_organisations_alert_name_finds_the_same_runbook(
    index: HybridRunbookIndex,
) -> None:
    matches = index.match(alert("HostOutOfDiskSpace", "Disk is almost full (< 10% left)"))
    assert matches[0].id == "node/NodeFilesystemAlmostOutOfSpace"
    matches = index.match(alert("KubeletCertExpiringSoon", "kubelet cert expires in 2 days"))
    assert matches[0].id == "kubernetes/KubeletClientCertificateExpiration"


def test_alert_declared_in_front_matter_matches_its_runbook(index: HybridRunbookIndex) -> None:
    matches = index.match(alert("CheckoutHighErrorRate", "checkout returns HTTP 5xx",
                                service="checkout", namespace="shop"))
    assert matches[0].id == "app/db-connection-pool-exhaustion"


def test_symptom_message_without_an_alert_name(index: HybridRunbookIndex) -> None:
    matches = index.match("pods keep restarting over and over after the release")
    assert matches and matches[0].id == "kubernetes/KubePodCrashLooping"
    assert matches[0].section in matches[0].sections


def test_abstains_when_no_runbook_applies(index: HybridRunbookIndex) -> None:
    assert index.match(OFF_TOPIC) == []
    assert index.match("the marketing newsletter has a typo in the footer") == []
    assert index.match("   ") == []


def test_scores_are_calibrated_and_ranked(index: HybridRunbookIndex) -> None:
    matches = index.match("filesystem nearly full on the node, disk space low", limit=5)
    assert matches and matches[0].id == "node/NodeFilesystemAlmostOutOfSpace"
    scores = [m.score for m in matches]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert len(matches) <= 5


def test_query_uses_alert_words_labels_and_annotations() -> None:
    query = Query.of(Alert(
        name="KubeJobNotCompleted", labels={"job": "kube-state-metrics", "namespace": "batch"},
        annotations={"message": "Job batch/export is taking long"},
        summary="Job did not complete", fingerprint="f",
    ))
    assert query.name == "KubeJobNotCompleted"
    assert query.text.startswith("kube job not completed")
    assert "Job batch/export is taking long" in query.text
    assert "kube-state-metrics" in query.labels and "batch" in query.labels


def test_build_runbook_index_indexes_the_configured_directory(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "runbooks")
    built = build_runbook_index(Settings(data_dir=tmp_path / "data", runbooks_dir=corpus))
    assert built.size == len(CORPUS)
    assert built.match("etcd has no leader")[0].id == "etcd/etcdNoLeader"


# --- CLI --------------------------------------------------------------------------------


def _invoke(args: list[str], tmp_path: Path, stdin: str | None = None) -> tuple[int, str, str]:
    from bot.cli import app

    env = {"HOTWASH_DATA_DIR": str(tmp_path / "data")}
    result = runner.invoke(app, args, input=stdin, env=env)
    return result.exit_code, result.stdout, result.stderr


def test_cli_index_is_incremental_and_reports_bad_files(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "runbooks")
    (corpus / "broken.md").write_text("---\ntitle: [oops\n---\n# Broken\n")
    code, out, err = _invoke(["runbooks", "index", str(corpus), "--json"], tmp_path)
    assert code == 0, err
    stats = json.loads(out)
    assert stats["embedded"] == len(CORPUS)
    assert [Path(p["path"]).name for p in stats["problems"]] == ["broken.md"]
    assert "broken.md" in err and "malformed front matter" in err

    code, out, _ = _invoke(["runbooks", "index", str(corpus)], tmp_path)
    assert code == 0
    assert f"0 embedded (0 chunks), {len(CORPUS)} unchanged" in " ".join(out.split())


def test_cli_index_missing_directory_fails_clearly(tmp_path: Path) -> None:
    code, _, err = _invoke(["runbooks", "index", str(tmp_path / "nope")], tmp_path)
    assert code == 2
    assert "runbooks directory not found" in err


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (json.dumps(AM_BODY), "node/NodeFilesystemAlmostOutOfSpace"),
        (json.dumps(SLACK_EVENT), "kubernetes/KubePodCrashLooping"),
        (json.dumps(SLACK_CALLBACK), "etcd/etcdNoLeader"),
        ("kubelet client certificate expires tomorrow",
         "kubernetes/KubeletClientCertificateExpiration"),
    ],
    ids=["alertmanager-v4", "slack-bare-event", "slack-event-callback", "plain-text"],
)
def test_cli_match_reads_every_payload_form(payload: str, expected: str, tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "runbooks")
    code, out, err = _invoke(["runbooks", "match", "--runbooks", str(corpus)], tmp_path, payload)
    assert code == 0, err
    result = json.loads(out)
    assert result["matches"][0]["id"] == expected
    assert set(result["matches"][0]) == {"id", "score", "title", "section"}


def test_cli_match_jsonl_one_result_per_line_and_abstains(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "runbooks")
    lines = [json.dumps(AM_BODY), json.dumps(OFF_TOPIC), "{not json", json.dumps(SLACK_EVENT),
             "", json.dumps({"unrelated": True})]
    code, out, err = _invoke(["runbooks", "match", "--jsonl", "--runbooks", str(corpus),
                              "--index-dir", str(tmp_path / "idx")], tmp_path, "\n".join(lines))
    assert code == 0, err
    results = [json.loads(line) for line in out.splitlines()]
    assert len(results) == 5  # the blank line is skipped
    assert results[0]["matches"][0]["id"] == "node/NodeFilesystemAlmostOutOfSpace"
    assert results[1] == {"matches": []}
    assert results[2]["matches"] == [] and "error" in results[2]
    assert results[3]["matches"][0]["id"] == "kubernetes/KubePodCrashLooping"
    assert results[4]["matches"] == [] and "unrecognised payload" in results[4]["error"]
    assert (tmp_path / "idx").is_dir()


def test_cli_match_indexes_a_changed_corpus_on_the_fly(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "runbooks")
    args = ["runbooks", "match", "--runbooks", str(corpus)]
    code, out, _ = _invoke(args, tmp_path, "redis memory fragmentation ratio too high")
    assert json.loads(out) == {"matches": []}
    (corpus / "redis-memory.md").write_text(
        "# Redis memory fragmentation\n\n## Meaning\n\nRedis uses far more RSS than its dataset;"
        " the memory fragmentation ratio is high.\n")
    code, out, _ = _invoke(args, tmp_path, "redis memory fragmentation ratio too high")
    assert json.loads(out)["matches"][0]["id"] == "redis-memory"


def test_cli_search_prints_a_readable_list(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "runbooks")
    code, out, _ = _invoke(["runbooks", "search", "etcd has no leader", "--runbooks",
                            str(corpus)], tmp_path)
    assert code == 0
    assert "1. etcd No Leader" in out and "etcd/etcdNoLeader" in out and "section:" in out
    code, out, _ = _invoke(["runbooks", "search", OFF_TOPIC, "--runbooks", str(corpus)],
                           tmp_path)
    assert code == 0 and "No runbook covers this" in out


def test_runbook_url_on_the_alert_is_honoured_and_urls_are_not_query_words(
    index: HybridRunbookIndex,
) -> None:
    linked = Alert(
        name="ControlPlaneWritesStuck", summary="writes to the control plane store hang",
        annotations={"runbook_url": "https://runbooks.example.dev/runbooks/etcd/etcdnoleader/"},
        fingerprint="f",
    )
    query = Query.of(linked)
    assert query.runbook_hint == "etcdnoleader"
    assert "https" not in query.text and "example" not in query.text
    assert index.match(linked)[0].id == "etcd/etcdNoLeader"


def test_alert_about_a_system_no_runbook_mentions_is_abstained(
    index: HybridRunbookIndex,
) -> None:
    # "Leader" and "no" sound like etcdNoLeader, but no runbook here is about Zookeeper.
    assert index.match(alert("ZookeeperNoLeader", "Zookeeper ensemble has no leader")) == []
    assert index.match(alert("EtcdNoLeader", "etcd cluster has no leader"))[0].id == (
        "etcd/etcdNoLeader")


def test_k8s_numeronym_is_read_as_kube() -> None:
    from bot.runbooks import words

    assert words("K8sNodeNotReady") == ["kube", "node", "not", "ready"]


def test_slack_markup_is_not_part_of_the_query(index: HybridRunbookIndex) -> None:
    text = ("<!here> :rotating_light: <@U024BE7LH> pods keep restarting in CrashLoopBackOff "
            "<https://grafana.example.com/d/abc|dashboard> <#C0ALERTS|alerts>")
    query = Query.of(text)
    assert query.text.split() == ["pods", "keep", "restarting", "in", "CrashLoopBackOff"]
    assert index.match(text)[0].id == "kubernetes/KubePodCrashLooping"


def test_compounds_and_spelling_variants_meet() -> None:
    from bot.retrieval import tokens

    assert set(tokens("AlertmanagerClusterCrashlooping")) >= set(tokens("crash looping"))
    assert tokens("apiserver errs") == tokens("API server errors")
    assert tokens("HPA maxed out") == tokens("hpa max out")
    assert tokens("configuration") == tokens("config")
    assert tokens("KubeNodeReadinessFlapping")[:3] == tokens("kube node not ready")


def test_chat_idioms_reach_the_words_runbooks_use() -> None:
    assert "file descriptor" in Query.of("we hit too many open files on ingest-1").idioms
    assert "flapping" in Query.of("eth0 keeps going up and down").idioms
    assert Query.of("opening files is slow").idioms == ""


def test_build_runbook_index_logs_skipped_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corpus = write_corpus(tmp_path / "runbooks")
    (corpus / "broken.md").write_bytes(b"# caf\xe9 latin-1")
    with caplog.at_level("WARNING", logger="bot.retrieval"):
        built = build_runbook_index(Settings(data_dir=tmp_path / "data", runbooks_dir=corpus))
    assert built.size == len(CORPUS)
    assert any("broken.md" in r.getMessage() and "not UTF-8" in r.getMessage()
               for r in caplog.records)


def test_cli_match_reads_a_pasted_firing_notification_as_text(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "runbooks")
    line = "[FIRING:1] KubePodCrashLooping (api-7d9 shop critical)"
    code, out, err = _invoke(["runbooks", "match", "--jsonl", "--runbooks", str(corpus)],
                             tmp_path, line + "\n")
    assert code == 0, err
    assert json.loads(out)["matches"][0]["id"] == "kubernetes/KubePodCrashLooping"


def test_a_payload_without_an_alert_name_is_matched_on_its_text(
    index: HybridRunbookIndex,
) -> None:
    nameless = Alert(name="UnnamedAlert", summary="etcd cluster has no leader",
                     fingerprint="f")
    assert Query.of(nameless).name == ""
    assert index.match(nameless)[0].id == "etcd/etcdNoLeader"


ROLLOUTS = {
    f"kubernetes/{name}.md": f"""# {name}

## Meaning

{meaning}

## Diagnosis

Check `kubectl rollout status {kind}/<name>` and the events of the pods that are not ready.

## Mitigation

Fix the pod template or roll back the {kind}.
"""
    for name, kind, meaning in (
        ("KubeDaemonSetRolloutStuck", "daemonset",
         "A DaemonSet rollout has not progressed: some of its pods are not updated or not "
         "ready on the nodes where they should run."),
        ("KubeDeploymentReplicasMismatch", "deployment",
         "A Deployment has not reached its desired number of available replicas: its rollout "
         "is stuck with pods not ready."),
        ("KubeStatefulSetUpdateNotRolledOut", "statefulset",
         "A StatefulSet update has not been rolled out: some replicas still run the old "
         "revision or are not ready."),
    )
}


def _index_of(root: Path, corpus: dict[str, str]) -> HybridRunbookIndex:
    """An index over ``corpus`` (path -> Markdown) written under ``root``."""
    for rel, text in corpus.items():
        (root / "runbooks" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "runbooks" / rel).write_text(text)
    built, _ = sync_and_open(settings=Settings(data_dir=root / "data"),
                             runbooks_dir=root / "runbooks")
    return built


@pytest.fixture(scope="module")
def rollout_index(tmp_path_factory: pytest.TempPathFactory) -> HybridRunbookIndex:
    return _index_of(tmp_path_factory.mktemp("rollouts"), ROLLOUTS)


@pytest.mark.parametrize(("query", "expected"), [
    ("the deployment rollout is stuck, pods not ready",
     "kubernetes/KubeDeploymentReplicasMismatch"),
    ("daemon set rollout stuck on the new nodes", "kubernetes/KubeDaemonSetRolloutStuck"),
    ("statefulset rollout stuck", "kubernetes/KubeStatefulSetUpdateNotRolledOut"),
])
def test_a_close_call_goes_to_the_runbook_of_the_same_workload_kind(
        rollout_index: HybridRunbookIndex, query: str, expected: str) -> None:
    # Three runbooks that read almost alike: the workload kind the message names decides.
    matches = rollout_index.match(query)
    assert matches and matches[0].id == expected


def test_an_alert_about_one_kind_ranks_a_runbook_about_another_kind_well_below(
        rollout_index: HybridRunbookIndex) -> None:
    matches = rollout_index.match(alert("KubernetesDeploymentRolloutStuck",
                                        "rollout of deployment web is stuck, 1 of 4 available"))
    assert matches[0].id == "kubernetes/KubeDeploymentReplicasMismatch"
    assert all(m.score < matches[0].score / 2 for m in matches[1:])


def test_workload_kinds_are_one_word_however_they_are_spelt() -> None:
    from bot.retrieval import tokens

    assert "daemonset" in tokens("KubeDaemonSetRolloutStuck")
    assert tokens("daemon set") == tokens("DaemonSet") == tokens("daemonsets")
    assert "set" not in tokens("KubeStatefulSetReplicasMismatch")


def test_a_label_naming_the_workload_kind_decides_a_generic_alert(
        rollout_index: HybridRunbookIndex) -> None:
    # "KubeRolloutStuck" could be any kind; kube-state-metrics labels say which one it is.
    stuck = Alert(name="KubeRolloutStuck", source=AlertSource.ALERTMANAGER,
                  summary="rollout is stuck, pods not ready", fingerprint="f",
                  labels={"alertname": "KubeRolloutStuck", "namespace": "shop",
                          "statefulset": "db", "severity": "warning"})
    assert rollout_index.match(stuck)[0].id == "kubernetes/KubeStatefulSetUpdateNotRolledOut"
    assert Query.of(stuck).label_keys == "statefulset"  # severity, namespace say nothing


@pytest.mark.parametrize(("query", "expected"), [
    ("fluentbit ds rollout stuck, 3 nodes still run the old pods",
     "kubernetes/KubeDaemonSetRolloutStuck"),
    ("kafka sts rollout stuck: kafka-2 still on the old revision",
     "kubernetes/KubeStatefulSetUpdateNotRolledOut"),
    ("web deploy rollout stuck, 2 pods not ready", "kubernetes/KubeDeploymentReplicasMismatch"),
])
def test_kubectl_short_names_name_the_workload_kind(
        rollout_index: HybridRunbookIndex, query: str, expected: str) -> None:
    # On-call engineers type kubectl's short names (ds, sts, deploy); runbooks spell them out.
    matches = rollout_index.match(query)
    assert matches and matches[0].id == expected


def test_error_strings_and_status_reasons_reach_runbook_words() -> None:
    from bot.retrieval import tokens

    # "x509" is read as the words "x 509", so the vocabulary matches it as a phrase.
    assert "certificate" in Query.of("kubelet logs: x509: certificate has expired").idioms
    assert "waiting" in Query.of("new pods stuck in ImagePullBackOff").idioms
    assert "file descriptor" in Query.of("accept4: too many open files").idioms
    assert {"daemonset"} <= set(tokens("fluentbit ds", expand=True))
    assert "daemonset" not in tokens("fluentbit ds")  # runbooks are never expanded


def test_every_vocabulary_entry_can_match_a_query() -> None:
    # An entry whose key the query reader never produces would be dead weight: every key
    # must be one word as `words` reads it, or be matched as a phrase.
    import yaml

    from bot import retrieval
    from bot.runbooks import words

    raw = yaml.safe_load((Path(retrieval.__file__).parent / "vocabulary.yaml").read_text())
    assert len(raw["synonyms"]) > 300 and len(raw["idioms"]) > 150
    for key in raw["synonyms"]:
        parts = words(str(key))
        assert parts == [str(key)] or " ".join(parts) in retrieval.IDIOMS, key
    for key in raw["idioms"]:
        assert " ".join(words(str(key))) in retrieval.IDIOMS, key
    for key in raw["canonical"]:
        assert key in retrieval.CANONICAL, key


def test_one_clause_of_a_chatty_message_is_searched_on_its_own(
        index: HybridRunbookIndex) -> None:
    text = ("morning all, sorry for the noise on a monday. the release went out fine, "
            "but the pods keep dying and restarting over and over")
    vectors = index._embed_query(Query.of(text))  # noqa: SLF001
    assert len(vectors) == 4  # the whole message, then each clause of three words or more
    assert index.match(text)[0].id == "kubernetes/KubePodCrashLooping"


def test_batched_embeddings_equal_one_at_a_time() -> None:
    # Texts of very different lengths are batched apart (no padding a clause to a long
    # query), and batching must not change a vector.
    import numpy as np

    from bot.embeddings import OnnxEmbedder

    embedder = OnnxEmbedder()
    texts = ["disk full", "the pods keep restarting after the deploy at noon " * 6,
             "node not ready", "certificate expires in two days on the ingress"]
    together = embedder.embed(texts)
    alone = np.stack([embedder.embed([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-4)


def test_a_changed_token_limit_re_embeds_the_runbooks(tmp_path: Path) -> None:
    # Vectors of texts cut at 64 tokens must not sit beside vectors cut at 128.
    from bot.adapters.chroma import open_runbook_store
    from bot.embeddings import OnnxEmbedder
    from bot.runbooks import sync_index

    corpus = write_corpus(tmp_path / "runbooks")
    settings = Settings(data_dir=tmp_path / "data")

    def sync(embedder: OnnxEmbedder) -> int:
        with open_runbook_store(settings, embedder_name=embedder.name) as store:
            return sync_index(directory=corpus, store=store, embedder=embedder).embedded

    assert sync(OnnxEmbedder()) == len(CORPUS)
    assert sync(OnnxEmbedder()) == 0
    assert sync(OnnxEmbedder(max_tokens=64)) == len(CORPUS)


def test_run_together_words_are_split_into_the_runbooks_words(
        rollout_index: HybridRunbookIndex) -> None:
    # Tools and tired people write numberMisscheduled, OutOfpods, rolloutstuck.
    assert rollout_index.segmented(Query.of("ds rolloutstuck again")).segments == "rollout stuck"
    assert "rollout stuck" in rollout_index.segmented(Query.of("rolloutstuck")).idioms
    # Words the runbooks use, short words and identifiers are left alone.
    for text in ("rollout stuck", "pods stuck", "api-7f9c6d5b8 x2kqp", "zzqqxxyyvv"):
        assert rollout_index.segmented(Query.of(text)).segments == ""


def _twin(name: str, meaning: str) -> str:
    return f"""# {name}

## Meaning

{meaning}

## Diagnosis

Compare the usage with the limit over the last hours and find who is using it.

## Mitigation

Raise the limit or reduce the usage.
"""


TWINS = {
    "kubernetes/KubeQuotaAlmostFull.md": _twin(
        "KubeQuotaAlmostFull", "A namespace resource quota is close to its hard limit."),
    "kubernetes/KubeQuotaFullyUsed.md": _twin(
        "KubeQuotaFullyUsed", "A namespace resource quota is used up to its hard limit."),
    "kubernetes/KubeQuotaExceeded.md": _twin(
        "KubeQuotaExceeded", "A namespace resource quota is used beyond its hard limit."),
    "alertmanager/AlertmanagerFailedToSendAlerts.md": _twin(
        "AlertmanagerFailedToSendAlerts",
        "Alertmanager fails to send notifications to an integration."),
    "alertmanager/AlertmanagerClusterFailedToSendAlerts.md": _twin(
        "AlertmanagerClusterFailedToSendAlerts",
        "The Alertmanager cluster fails to send notifications to an integration."),
}


@pytest.fixture(scope="module")
def twin_index(tmp_path_factory: pytest.TempPathFactory) -> HybridRunbookIndex:
    return _index_of(tmp_path_factory.mktemp("twins"), TWINS)


@pytest.mark.parametrize(("query", "expected"), [
    ("team-data memory requests at 92% of the namespace quota",
     "kubernetes/KubeQuotaAlmostFull"),
    ("namespace quota for pods at 100% used, the next pod will be refused",
     "kubernetes/KubeQuotaFullyUsed"),
    ("limits.cpu usage is at 112% of the hard quota in namespace analytics",
     "kubernetes/KubeQuotaExceeded"),
    ("namespace quota nearing the limit", "kubernetes/KubeQuotaAlmostFull"),
    ("notifications to pagerduty failing from all replicas of alertmanager",
     "alertmanager/AlertmanagerClusterFailedToSendAlerts"),
    ("one instance of alertmanager fails to send to slack, the rest are fine",
     "alertmanager/AlertmanagerFailedToSendAlerts"),
])
def test_twins_are_told_apart_by_how_much_and_how_many(
        twin_index: HybridRunbookIndex, query: str, expected: str) -> None:
    # Runbooks that differ by one word of degree (almost / fully / exceeded) or of scope (the
    # whole cluster / one instance): a percentage or a phrase in the message says which.
    matches = twin_index.match(query)
    assert matches and matches[0].id == expected


def test_a_percentage_that_is_not_a_share_of_a_capacity_says_nothing_about_degree() -> None:
    assert "almost full" in Query.of("root filesystem 97% full on worker-31").idioms
    assert "exceeded" in Query.of("limits.cpu usage 112% of hard").idioms
    assert "fully used" in Query.of("ResourceQuotaAt100Percent").idioms
    for text in ("error rate 98% on checkout", "parser throttled in 95% of CFS periods"):
        assert not {"almost", "fully", "exceeded"} & set(Query.of(text).idioms.split())
