#!/usr/bin/env bash
# End-to-end check of klring over a NATS cluster (docker-compose.cluster.yml,
# docs/cluster.md): called by scripts/e2e-compose.sh after its other checks,
# or alone once the images exist.
#
#   1. `coordinator certs --routes` makes a CA, a server certificate for
#      nats-a, nats-b and nats-c, client certificates, and the route
#      certificate; the keys are given to uid 65532, the containers' user;
#   2. three NATS servers joined by routes (mutual TLS with the route
#      certificate, a route user and password), three workers, each on its
#      own node's server first, and the coordinator, as one compose project;
#   3. once step E2E_CLUSTER_KILL_AT is committed by 3 workers, `docker kill`
#      nats-b: worker-b moves to the next server of its list (its log says
#      so), the attempt in flight is aborted and retried;
#   4. every server had routes (its log), and the coordinator's first
#      membership of three workers put each on its own node's server;
#   5. the coordinator finishes every step and exits 0, every worker exits 0,
#      and the last step was computed by all three workers;
#   6. `coordinator verify` audits the run directory: every step committed
#      exactly once, every window once, metrics that agree with the ledger,
#      checkpoints that verify;
#   7. the project is torn down (`down -v`), also on failure.
#
# Environment (all optional):
#   E2E_IMAGE_TAG=e2e          tag of the klring images to use (they must exist)
#   E2E_CLUSTER_STEPS=400       steps of the run
#   E2E_CLUSTER_KILL_AT=10     kill nats-b once this step is committed
#   E2E_KEEP=1                 do not tear down (debugging)
set -euo pipefail
cd "$(dirname "$0")/.."

tag=${E2E_IMAGE_TAG:-e2e}
steps=${E2E_CLUSTER_STEPS:-400}
kill_at=${E2E_CLUSTER_KILL_AT:-10}
workers=3
start=$(date +%s)
phase_timeout=${E2E_PHASE_TIMEOUT:-180}

stamp() { printf '[e2e-cluster %s +%3ds] %s\n' "$(date -u +%H:%M:%S)" "$(($(date +%s) - start))" "$*"; }
fail() { stamp "FAIL: $*" >&2; exit 1; }

for v in $(compgen -e); do
  case $v in KLRING_*|COMPOSE_*) unset "$v" ;; esac
done

command -v docker >/dev/null || fail "docker is not installed"
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

project="klring-e2e-cluster-$(date +%s)-$$"
work=$(mktemp -d)
chmod 755 "$work"
envfile="$work/cluster.env"
follower=""
ok=0
compose() { "${compose_cmd[@]}" --env-file "$envfile" -p "$project" -f docker-compose.cluster.yml "$@"; }

cleanup() {
  local rc=$?
  set +e
  if [ -n "$follower" ]; then kill "$follower" 2>/dev/null; wait "$follower" 2>/dev/null; fi
  if [ "$ok" != 1 ]; then
    stamp "last logs of every service:"
    compose logs --no-color --tail=30 2>&1 | sed 's/^/    /'
  fi
  if [ "${E2E_KEEP:-0}" = 1 ]; then
    stamp "E2E_KEEP=1: leaving project $project up (files in $work)"
  else
    stamp "tearing down project $project"
    compose down -v --remove-orphans >/dev/null 2>&1
    rm -rf "$work"
  fi
  stamp "total $(($(date +%s) - start))s"
  if [ "$ok" = 1 ]; then stamp "PASS"; else stamp "FAILED (exit $rc)"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -x "${KLRING_BIN_DIR:-bin}/coordinator" ]; then
  coordinator=("${KLRING_BIN_DIR:-bin}/coordinator")
else
  coordinator=(go run ./cmd/coordinator)
fi

# 1. Certificates, with the route certificate.
"${coordinator[@]}" certs --out "$work/certs" --hosts nats-a,nats-b,nats-c --clients coordinator,worker --routes | sed 's/^/    /'
if [ "$(id -u)" = 0 ]; then
  chown 65532:65532 "$work"/certs/*-key.pem
else
  chmod 0644 "$work"/certs/*-key.pem # throw-away keys; see scripts/e2e-multihost.sh
fi

random() { printf 'e2e-%s' "$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"; }
cat >"$envfile" <<EOF2
KLRING_IMAGE_TAG=$tag
KLRING_CERTS_DIR=$work/certs
KLRING_COORDINATOR_NATS_USER=e2e-coordinator
KLRING_COORDINATOR_NATS_PASSWORD=$(random)
KLRING_WORKER_NATS_USER=e2e-worker
KLRING_WORKER_NATS_PASSWORD=$(random)
KLRING_ROUTE_USER=e2e-route
KLRING_ROUTE_PASSWORD=$(random)
KLRING_METRICS_PUBLISH=127.0.0.1:
KLRING_JOB=e2e
KLRING_MODEL_PRESET=custom
KLRING_MODEL_N_EMBD=64
KLRING_MODEL_N_LAYER=2
KLRING_MODEL_N_HEAD=2
KLRING_MODEL_CTX=64
KLRING_TRAIN_STEPS=$steps
KLRING_TRAIN_BATCH_WINDOWS=24
KLRING_CLUSTER_MIN_WORKERS=2
KLRING_CLUSTER_THREADS=1
KLRING_RUN_CHECKPOINT_EVERY=10
KLRING_RUN_EVAL_EVERY=20
EOF2

# 2. The cluster, the coordinator and the workers.
stamp "project $project: nats-a, nats-b, nats-c (routes over mutual TLS), the coordinator, worker-a, worker-b, worker-c"
compose up -d 2>&1 | sed 's/^/    /'
coord=$(compose ps -q coordinator)
[ -n "$coord" ] || fail "the coordinator did not start"
docker logs -f "$coord" >"$work/coordinator.log" 2>&1 &
follower=$!
declare -A server
for s in a b c; do
  server[$s]=$(compose ps -q "nats-$s")
  [ -n "${server[$s]}" ] || fail "nats-$s did not start"
done

# 3. Step $kill_at with 3 workers, then kill nats-b (first, so that a fast
# run cannot end before the kill).
killed_after=""
while IFS= read -r line; do
  [[ $line =~ (^|[[:space:]])step=([0-9]+) ]] || continue
  n=${BASH_REMATCH[2]}
  [ "$n" -lt "$steps" ] || break
  [ "$n" -ge "$kill_at" ] || continue
  if [[ $line =~ [[:space:]]workers=$workers([[:space:]]|$) ]]; then killed_after=$n; break; fi
done < <(timeout "$phase_timeout" tail -s 0.05 -n +1 --pid="$follower" -f "$work/coordinator.log")
[ -n "$killed_after" ] || fail "no step >= $kill_at with $workers workers before the end or within ${phase_timeout}s"
docker kill "${server[b]}" >/dev/null || fail "docker kill nats-b failed"
at=$(grep -Eo '(^|[[:space:]])step=[0-9]+' "$work/coordinator.log" | tail -1 | tr -dc 0-9)
[ "${at:-0}" -lt "$steps" ] || fail "the run ended (step $at) before nats-b was killed: make it longer (E2E_CLUSTER_STEPS)"
stamp "killed nats-b after step $killed_after (docker kill returned at step ${at:-?} of $steps)"

# 4. Routes (the logs of the servers, nats-b's too).
for s in a b c; do
  n=0
  for _ in $(seq 1 100); do
    n=$(docker logs "${server[$s]}" 2>&1 | grep -c "Route connection created" || true)
    [ "$n" -ge 2 ] && break
    sleep 0.1
  done
  [ "$n" -ge 2 ] || fail "nats-$s has $n route connections after 10s; want routes to the other servers"
done
stamp "every server has routes (mutual TLS, route password)"

membership=$(grep -m1 "msg=membership.* workers=$workers " "$work/coordinator.log" || true)
for s in a b c; do
  [[ $membership == *worker-$s* && $membership == *nats-$s* ]] || fail "the first membership does not name worker-$s and nats-$s: $membership"
done
stamp "coordinator: $(grep -o 'members=.*' <<<"$membership")"

# 5. The run finishes with all three workers.
code=$(timeout "$phase_timeout" docker wait "$coord") || fail "the coordinator still runs ${phase_timeout}s after the kill"
[ "$code" = 0 ] || fail "the coordinator exited $code"
for s in a b c; do
  id=$(compose ps -q "worker-$s")
  code=$(timeout 60 docker wait "$id") || fail "worker-$s still runs after the job ended"
  [ "$code" = 0 ] || fail "worker-$s exited $code"
done
moved=$(docker logs "$(compose ps -q worker-b)" 2>&1 | grep "nats reconnected" | tail -1 || true)
[[ $moved == *nats-c:4222* || $moved == *nats-a:4222* ]] || fail "worker-b's log does not say it reconnected to another server: '$moved'"
stamp "worker-b: $(grep -o 'msg=.*' <<<"$moved")"
aborts=$(grep -c "step aborted" "$work/coordinator.log" || true)
stamp "coordinator and workers exited 0 ($aborts aborted attempts, retried)"

# 6. Exactly once, audited.
docker cp "$coord:/data" "$work/run" >/dev/null || fail "copying the run directory out of the coordinator"
"${coordinator[@]}" verify "$work/run" | sed 's/^/    /' || fail "coordinator verify of the run directory"
last=$(tail -1 "$work/run/ledger.jsonl")
for s in a b c; do
  [[ $last == *'"worker":"worker-'$s'"'* ]] || fail "the last step was not computed by worker-$s: ${last:0:300}"
done
stamp "verified: every step once, every window once; the last step computed by worker-a, worker-b and worker-c"
ok=1
