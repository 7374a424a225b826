#!/usr/bin/env bash
# End-to-end check of the deployment across machines (docs/compose.md), on
# one Docker host as if it were two: called by scripts/e2e-compose.sh after
# its single-host checks, or alone once the images exist.
#
#   1. `coordinator certs` makes a CA, a server certificate for nats and
#      head.e2e, and client certificates for the coordinator and the workers
#      (and a second, unrelated CA); the keys are given to uid 65532, the
#      containers' user, as docs/compose.md says;
#   2. the head node: docker-compose.yml + docker-compose.head.yml as one
#      compose project (NATS with TLS and client certificates, published on
#      the Docker bridge's gateway address, and the coordinator);
#   3. from the host, with a raw client (scripts/nats-probe.py): the workers'
#      user, over TLS with its certificate, may publish a heartbeat but
#      neither a plan nor a reply (_INBOX); a client without a certificate, a
#      plaintext client and a client trusting another CA are refused;
#   4. the worker node: docker-compose.worker.yml as a second compose project
#      on a network of its own, reaching the head as tls://head.e2e:PORT (the
#      host's gateway address: the published port is the only way in), with
#      2 workers;
#   5. a worker that trusts another CA exits non-zero at once, saying the
#      server's certificate is not trusted;
#   6. the coordinator finishes every step with the 2 remote workers, and
#      metrics.jsonl and ledger.jsonl hold every step once, computed by them;
#   7. both projects are torn down (`down -v`), also on failure.
#
# Environment (all optional):
#   E2E_IMAGE_TAG=e2e         tag of the klring images to use (they must exist)
#   E2E_MULTIHOST_STEPS=20    steps of the run
#   E2E_KEEP=1                do not tear down (debugging)
set -euo pipefail
cd "$(dirname "$0")/.."

tag=${E2E_IMAGE_TAG:-e2e}
steps=${E2E_MULTIHOST_STEPS:-20}
remote_workers=2
start=$(date +%s)
phase_timeout=${E2E_PHASE_TIMEOUT:-180}

stamp() { printf '[e2e-multihost %s +%3ds] %s\n' "$(date -u +%H:%M:%S)" "$(($(date +%s) - start))" "$*"; }
fail() { stamp "FAIL: $*" >&2; exit 1; }

for v in $(compgen -e); do
  case $v in KLRING_*|COMPOSE_*) unset "$v" ;; esac
done

command -v docker >/dev/null || fail "docker is not installed"
command -v python3 >/dev/null || fail "python3 is needed for the raw NATS client and the JSON checks"
if docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose_cmd=(docker-compose)
else
  fail "neither 'docker compose' nor 'docker-compose' is available"
fi
for name in coordinator worker nats-server; do
  docker image inspect "klring/$name:$tag" >/dev/null 2>&1 || fail "image klring/$name:$tag is missing: build it (KLRING_IMAGE_TAG=$tag bash scripts/build-images.sh)"
done

id="$(date +%s)-$$"
head_project="klring-e2e-head-$id"
worker_project="klring-e2e-workers-$id"
badworker="klring-e2e-wrongca-$id"
work=$(mktemp -d)
chmod 755 "$work"
ok=0

head_env="$work/head.env"
worker_env="$work/worker.env"
override="$work/worker-hosts.yml"
head_node() { "${compose_cmd[@]}" --env-file "$head_env" -p "$head_project" -f docker-compose.yml -f docker-compose.head.yml "$@"; }
worker_node() { "${compose_cmd[@]}" --env-file "$worker_env" -p "$worker_project" -f docker-compose.worker.yml -f "$override" "$@"; }

cleanup() {
  local rc=$?
  set +e
  if [ "$ok" != 1 ]; then
    stamp "last logs of the head node:"
    head_node logs --no-color --tail=30 2>&1 | sed 's/^/    /'
    stamp "last logs of the worker node:"
    worker_node logs --no-color --tail=30 2>&1 | sed 's/^/    /'
    if docker inspect "$badworker" >/dev/null 2>&1; then
      echo "    --- worker trusting another CA:"
      docker logs --tail=10 "$badworker" 2>&1 | sed 's/^/    /'
    fi
  fi
  docker rm -f "$badworker" >/dev/null 2>&1
  if [ "${E2E_KEEP:-0}" = 1 ]; then
    stamp "E2E_KEEP=1: leaving projects $head_project and $worker_project up (files in $work)"
  else
    stamp "tearing down projects $head_project and $worker_project"
    worker_node down -v --remove-orphans >/dev/null 2>&1
    head_node down -v --remove-orphans >/dev/null 2>&1
    rm -rf "$work"
  fi
  stamp "total $(($(date +%s) - start))s"
  if [ "$ok" = 1 ]; then stamp "PASS"; else stamp "FAILED (exit $rc)"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

random() { printf 'e2e-%s' "$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"; }
coord_password=$(random)
worker_password=$(random)

# 1. Certificates, as docs/compose.md makes them.
if [ -x "${KLRING_BIN_DIR:-bin}/coordinator" ]; then
  certs_cmd=("${KLRING_BIN_DIR:-bin}/coordinator" certs)
else
  certs_cmd=(go run ./cmd/coordinator certs)
fi
"${certs_cmd[@]}" --out "$work/certs" --hosts nats,head.e2e --clients coordinator,worker | sed 's/^/    /'
"${certs_cmd[@]}" --out "$work/otherca" --hosts head.e2e --clients worker >/dev/null
if [ "$(id -u)" = 0 ]; then
  chown 65532:65532 "$work"/certs/*-key.pem "$work"/otherca/*-key.pem
  stamp "keys given to uid 65532 (chown), mode 0600"
else
  # Without root the keys cannot be given away; these are thrown away
  # with $work.
  chmod 0644 "$work"/certs/*-key.pem "$work"/otherca/*-key.pem
  stamp "NOTE: not root: the throw-away keys are made readable (0644) instead of chown 65532"
fi

# The published port is bound to the Docker bridge's gateway: reachable from
# this host and from containers on any network (as host-gateway), not from
# other machines.
gateway=$(ip -4 -o addr show docker0 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -1)
[ -n "$gateway" ] || fail "no IPv4 address on docker0 (the Docker bridge's gateway)"

common_env() {
  cat <<EOF2
KLRING_IMAGE_TAG=$tag
KLRING_CERTS_DIR=$work/certs
KLRING_WORKER_NATS_USER=e2e-worker
KLRING_WORKER_NATS_PASSWORD=$worker_password
KLRING_JOB=e2e
KLRING_CLUSTER_THREADS=1
EOF2
}
{
  common_env
  cat <<EOF2
KLRING_COORDINATOR_NATS_USER=e2e-coordinator
KLRING_COORDINATOR_NATS_PASSWORD=$coord_password
KLRING_NATS_PUBLISH=$gateway:
KLRING_METRICS_PUBLISH=127.0.0.1:
KLRING_MODEL_PRESET=custom
KLRING_MODEL_N_EMBD=64
KLRING_MODEL_N_LAYER=2
KLRING_MODEL_N_HEAD=2
KLRING_MODEL_CTX=64
KLRING_TRAIN_STEPS=$steps
KLRING_TRAIN_BATCH_WINDOWS=24
KLRING_CLUSTER_MIN_WORKERS=$remote_workers
KLRING_RUN_CHECKPOINT_EVERY=10
KLRING_RUN_EVAL_EVERY=10
EOF2
} >"$head_env"

# 2. The head node.
stamp "head node: project $head_project (docker-compose.yml + docker-compose.head.yml), NATS with TLS on $gateway"
head_node up -d --scale worker=0 nats coordinator 2>&1 | sed 's/^/    /'
nats=$(head_node ps -a -q nats)
coord=$(head_node ps -a -q coordinator)
[ -n "$nats" ] && [ -n "$coord" ] || fail "nats or the coordinator of the head node did not start"
published=$(docker port "$nats" 4222/tcp | head -1)
port=${published##*:}
[ "${published%:*}" = "$gateway" ] && [ -n "$port" ] || fail "NATS is published on '$published'; want $gateway:PORT"
stamp "NATS published on $published"

# 3. Raw clients from the host.
probe() { python3 scripts/nats-probe.py "$gateway" "$port" --server-name head.e2e "$@" | tr '\n' '|'; }
tls_worker=(--tls --ca "$work/certs/ca.pem" --cert "$work/certs/worker.pem" --key "$work/certs/worker-key.pem" --user e2e-worker --password "$worker_password")
answer=""
for _ in $(seq 1 50); do # the server may not listen yet
  answer=$(probe "${tls_worker[@]}" --pub klring.e2e.hb --pub klring.e2e.plan --pub _INBOX.e2e.x 2>&1 || true)
  case $answer in info*) break ;; esac
  sleep 0.2
done
want="info tls_required=true auth_required=true|tls ok|connect PONG|pub klring.e2e.hb ok|pub klring.e2e.plan -ERR 'Permissions Violation for Publish to \"klring.e2e.plan\"'|pub _INBOX.e2e.x -ERR 'Permissions Violation for Publish to \"_INBOX.e2e.x\"'|"
[ "$answer" = "$want" ] || fail "the workers' user over TLS: '$answer'; want '$want'"
stamp "workers' user over mTLS: may heartbeat; a plan and a reply (_INBOX) are refused (Permissions Violation)"
answer=$(probe --tls --ca "$work/certs/ca.pem" --user e2e-worker --password "$worker_password")
case $answer in
  "info tls_required=true auth_required=true|tls ok|connect closed: "*"certificate required"*) ;;
  *) fail "a TLS client without a certificate: '$answer'; want the server to refuse it (certificate required)" ;;
esac
answer=$(probe --user e2e-worker --password "$worker_password")
case $answer in
  "info tls_required=true auth_required=true|connect closed: "*) ;;
  *) fail "a plaintext client: '$answer'; want the server to close the connection" ;;
esac
answer=$(probe --tls --ca "$work/otherca/ca.pem" --user e2e-worker --password "$worker_password")
case $answer in
  "info tls_required=true auth_required=true|tls refused: "*"CERTIFICATE_VERIFY_FAILED"*) ;;
  *) fail "a client trusting another CA: '$answer'; want its handshake to fail" ;;
esac
stamp "refused: a TLS client without a certificate, a plaintext client, a client trusting another CA"

# 4. The worker node.
{
  common_env
  echo "KLRING_HEAD_URL=tls://head.e2e:$port"
} >"$worker_env"
cat >"$override" <<EOF2
# Written by scripts/e2e-multihost.sh: head.e2e is this host, as a DNS
# record would make it on a real network.
services:
  worker:
    extra_hosts:
      - "head.e2e:host-gateway"
EOF2
stamp "worker node: project $worker_project (docker-compose.worker.yml), $remote_workers workers -> tls://head.e2e:$port"
worker_node up -d --scale "worker=$remote_workers" 2>&1 | sed 's/^/    /'
mapfile -t worker_ids < <(worker_node ps -a -q worker)
[ "${#worker_ids[@]}" = "$remote_workers" ] || fail "${#worker_ids[@]} workers started; want $remote_workers"
hosts=()
for w in "${worker_ids[@]}"; do
  hosts+=("$(docker inspect -f '{{.Config.Hostname}}' "$w")")
  net=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$w")
  case $net in *"$head_project"*) fail "worker ${w:0:12} is on the head's network ($net)" ;; esac
done

# 5. A worker that trusts another CA.
docker run -d --name "$badworker" --add-host head.e2e:host-gateway -v "$work/otherca:/certs:ro" \
  -e "KLRING_NATS_URL=tls://head.e2e:$port" -e KLRING_NATS_USER=e2e-worker -e "KLRING_NATS_PASSWORD=$worker_password" \
  -e KLRING_NATS_TLS_CA=/certs/ca.pem -e KLRING_NATS_TLS_CERT=/certs/worker.pem -e KLRING_NATS_TLS_KEY=/certs/worker-key.pem \
  -e KLRING_JOB=e2e "klring/worker:$tag" >/dev/null
code=$(timeout 60 docker wait "$badworker") || fail "the worker trusting another CA still runs after 60s; it must exit at once"
badlog=$(docker logs "$badworker" 2>&1 || true)
[ "$code" != 0 ] || fail "the worker trusting another CA exited 0"
grep -q "certificate is not trusted" <<<"$badlog" || fail "the worker trusting another CA exited $code without saying why: $(tail -3 <<<"$badlog")"
stamp "refused: the worker trusting another CA exited $code: $(grep -o -m1 'TLS failed: [^:]*' <<<"$badlog")"

# 6. The run, with the remote workers only.
stamp "waiting for the coordinator to finish $steps steps with $remote_workers remote workers"
code=$(timeout "$phase_timeout" docker wait "$coord") || fail "the coordinator still runs after ${phase_timeout}s"
[ "$code" = 0 ] || fail "the coordinator exited $code"
for w in "${worker_ids[@]}"; do
  code=$(timeout 60 docker wait "$w") || fail "worker ${w:0:12} still runs 60s after the job ended"
  [ "$code" = 0 ] || fail "worker ${w:0:12} exited $code; want 0"
done
stamp "the coordinator and the remote workers exited 0"
for f in metrics.jsonl ledger.jsonl; do
  docker cp "$coord:/data/$f" "$work/$f" >/dev/null 2>&1 || fail "/data/$f is missing"
done
python3 - "$work" "$steps" "${hosts[@]}" <<'EOF2' || fail "metrics and ledger of the run across machines"
import json, sys
work, steps, hosts = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
metrics = [json.loads(l) for l in open(f"{work}/metrics.jsonl")]
ledger = [json.loads(l) for l in open(f"{work}/ledger.jsonl")]
if [m["step"] for m in metrics] != list(range(1, steps + 1)):
    sys.exit(f"    metrics steps {[m['step'] for m in metrics]}; want 1..{steps}, each once")
if [e["step"] for e in ledger] != list(range(1, steps + 1)):
    sys.exit(f"    ledger steps {[e['step'] for e in ledger]}; want 1..{steps}, each once")
for e in ledger:
    got = [w for r in e["ranks"] for w in r["windows"]]
    if len(set(got)) != len(got) or sorted(got) != sorted(e["batch"]):
        sys.exit(f"    ledger step {e['step']}: ranks' windows {sorted(got)}; want the batch, each once")
    names = [r["worker"] for r in e["ranks"]]
    if len(names) != len(hosts) or not all(any(h in n for h in hosts) for n in names):
        sys.exit(f"    ledger step {e['step']}: workers {names}; want the {len(hosts)} remote workers {hosts}")
print(f"    {steps} steps, each once, every window once, all computed by the remote workers {hosts}")
EOF2
stamp "every step once, computed by the workers of the other project over TLS"
ok=1
