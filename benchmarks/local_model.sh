#!/usr/bin/env bash
# Optional check of the triage pipeline against a real local model (never part of make test).
#
#   benchmarks/local_model.sh /path/to/llama-server /path/to/model.gguf [port]
#
# Starts llama.cpp's llama-server on 127.0.0.1 with the given GGUF, runs the quality cases
# (tests/test_evals.py, marker llm) and one `hotwash triage` of the demo alert against it,
# prints per-case figures (author, grounding, tokens, latency, schema mode) and stops the
# server. Downloads nothing: bring your own llama-server binary and GGUF file (README,
# "Checking against a real local model"). Exit status: that of the eval run.
# EVAL_SELECT='01 or 09' runs only the matching cases (pytest -k); a CPU model takes minutes
# per case.
set -uo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 LLAMA_SERVER GGUF [PORT]" >&2
    exit 2
fi
server_bin=$1
gguf=$2
root=$(cd "$(dirname "$0")/.." && pwd)
python=$root/.venv/bin/python
[[ -x $server_bin ]] || { echo "not executable: $server_bin" >&2; exit 2; }
[[ -f $gguf ]] || { echo "no such GGUF: $gguf" >&2; exit 2; }
port=${3:-$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')}
model=${HOTWASH_EVAL_MODEL:-$(basename "$gguf" .gguf)}
# Two threads: the machines this runs on are small and shared.
threads=${LOCAL_MODEL_THREADS:-2}

work=$(mktemp -d /tmp/hotwash-local-model.XXXXXX)
echo "work dir: $work"
# One slot, 8k context: the triage prompt is ~1.5-3k tokens plus up to 1,200 completion tokens.
"$server_bin" -m "$gguf" --host 127.0.0.1 --port "$port" -c 8192 -np 1 -t "$threads" \
    --alias "$model" >"$work/llama-server.log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null' EXIT
echo "llama-server pid $server_pid on 127.0.0.1:$port, model $model"

for _ in $(seq 1 180); do
    if curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "llama-server exited; see $work/llama-server.log" >&2
        tail -20 "$work/llama-server.log" >&2
        exit 1
    fi
    sleep 1
done
curl -fsS "http://127.0.0.1:$port/health" >/dev/null || { echo "server not ready" >&2; exit 1; }

cd "$root" || exit 1
echo "== quality cases (tests/test_evals.py) =="
HOTWASH_EVAL_BASE_URL="http://127.0.0.1:$port/v1" HOTWASH_EVAL_MODEL="$model" \
    HOTWASH_EVAL_REPORT="$work/evals.jsonl" \
    .venv/bin/pytest -m llm tests/test_evals.py -v -p no:cacheprovider \
    ${EVAL_SELECT:+-k "$EVAL_SELECT"} 2>&1 | tee "$work/pytest.log"
eval_status=${PIPESTATUS[0]}

echo "== hotwash triage --alert samples/alerts/checkout-5xx.json =="
HOTWASH_LLM_BASE_URL="http://127.0.0.1:$port/v1" HOTWASH_LLM_MODEL="$model" \
    HOTWASH_LLM_TIMEOUT_S=300 HOTWASH_DATA_DIR="$work/data" \
    .venv/bin/hotwash triage --alert samples/alerts/checkout-5xx.json --json \
    >"$work/triage.json" 2>"$work/triage.err"
echo "exit $? (draft JSON in $work/triage.json)"

"$python" - "$work/evals.jsonl" "$work/triage.json" <<'EOF'
import json
import sys
from pathlib import Path

rows = [json.loads(line) for line in Path(sys.argv[1]).read_text().splitlines() if line]
triage = Path(sys.argv[2])
if triage.exists() and triage.read_text().strip():
    for draft in json.loads(triage.read_text()):
        rows.append({"case": "cli:checkout-5xx", "author": draft["content"]["author"],
                     "grounding": draft["grounding_score"],
                     "prompt_tokens": draft["prompt_tokens"],
                     "completion_tokens": draft["completion_tokens"],
                     "latency_ms": draft["latency_ms"],
                     "model_calls": draft["params"].get("model_calls", []),
                     "notes": draft["notes"]})
print(f"{'case':28} {'author':13} {'ground':>6} {'calls':>5} {'prompt':>6} {'compl':>6} "
      f"{'secs':>6}  schema")
for r in rows:
    modes = ",".join(sorted({c.get("schema_mode") or "?" for c in r["model_calls"]})) or "-"
    ground = "-" if r["grounding"] is None else f"{r['grounding']:.2f}"
    print(f"{r['case']:28} {r['author']:13} {ground:>6} {len(r['model_calls']):>5} "
          f"{r['prompt_tokens']:>6} {r['completion_tokens']:>6} {r['latency_ms'] / 1000:>6.1f}"
          f"  {modes}")
    for note in r["notes"]:
        print(f"    note: {note[:200]}")
if rows:
    fell = sum(r["author"] != "model" for r in rows)
    repaired = sum(len(r["model_calls"]) > 1 for r in rows)
    calls = [c for r in rows for c in r["model_calls"]]
    secs = sum(c["latency_ms"] for c in calls) / 1000
    completion = sum(c["completion_tokens"] for c in calls)
    print(f"drafts {len(rows)}: evidence-only fallback {fell}, needed a repair call {repaired}; "
          f"model calls {len(calls)}, {completion} completion tokens in {secs:.0f} s "
          f"({completion / secs if secs else 0:.1f} tok/s incl. prompt processing)")
EOF
exit "$eval_status"
