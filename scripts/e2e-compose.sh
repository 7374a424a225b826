#!/usr/bin/env bash
# End-to-end check of the docker-compose deployment (also `make e2e`):
#
#   1. build the images (scripts/build-images.sh, tag "e2e" or E2E_IMAGE_TAG);
#   2. start NATS, the coordinator and 3 workers under a project name of its
#      own, so it never touches a user's stack; check that only the
#      coordinator's metrics port is published;
#   3. wait for step 10 with 3 workers and `docker kill` one worker;
#   4. check that NATS refuses a client with no or wrong credentials (a raw
#      CONNECT from the host), that the workers' user may publish neither a
#      plan nor a reply (_INBOX; scripts/nats-probe.py), and that a worker
#      with a wrong password exits non-zero with an authorization error;
#      wait for the coordinator to finish every step with the 2 workers left;
#   5. check metrics.jsonl (every step 1..N exactly once) and ledger.jsonl
#      (every window of every step counted exactly once: the batch is the
#      disjoint union of the ranks' windows);
#   6. `down` (keeping the run volume), `up` with more steps, and check that
#      the coordinator resumes from the newest checkpoint (step N); stop a
#      worker (SIGTERM: it leaves) and start a new one, E2E_CHURN times, so
#      the membership epoch climbs; then kill the coordinator mid-run and
#      start it again: it resumes from its newest checkpoint, the workers
#      (which remember a later epoch of the old run) follow it at once, and
#      metrics.jsonl ends up with every step exactly once, lines 1..N
#      unchanged; `coordinator verify` audits the run dir;
#   7. tear everything down (`down -v`), also on failure, after printing the
#      last logs of every service;
#   8. run scripts/e2e-multihost.sh: the head node and a worker node as two
#      compose projects, over TLS with client certificates;
#   9. run scripts/e2e-cluster.sh: three NATS servers joined by routes
#      (docker-compose.cluster.yml), a worker on each, one server killed
#      mid-run, and `coordinator verify` of the run directory.
#
# Works with `docker compose` and `docker-compose`, whichever exists.
# Environment (all optional):
#   E2E_STEPS=200         steps of the first run (long enough that the kill of
#                         a worker lands mid-run on an idle machine)
#   E2E_MORE_STEPS=700    steps added for the resumed run (long enough for the churn)
#   E2E_RESTART_AFTER=15  kill the resumed coordinator this many steps past N
#   E2E_KILL_AT=10        kill a worker once this step is committed
#   E2E_CHURN=3           worker leave/rejoin cycles before the coordinator is killed
#   E2E_SKIP_BUILD=1      reuse the klring/*:$E2E_IMAGE_TAG images
#   E2E_IMAGE_TAG=e2e     tag of the images built and used
#   E2E_SKIP_MULTIHOST=1  skip step 8
#   E2E_SKIP_CLUSTER=1    skip step 9
#   E2E_KEEP=1            do not tear down (debugging; prints the project name)
set -euo pipefail
cd "$(dirname "$0")/.."

steps=${E2E_STEPS:-200}
more=${E2E_MORE_STEPS:-700}
restart_after=${E2E_RESTART_AFTER:-15}
kill_at=${E2E_KILL_AT:-10}
churn=${E2E_CHURN:-3}
workers=3
tag=${E2E_IMAGE_TAG:-e2e}
start=$(date +%s)
phase_timeout=${E2E_PHASE_TIMEOUT:-180}

stamp() { printf '[e2e %s +%3ds] %s\n' "$(date -u +%H:%M:%S)" "$(($(date +%s) - start))" "$*"; }
fail() { stamp "FAIL: $*" >&2; exit 1; }

# Settings of the user's shell must not leak into the test.
for v in $(compgen -e); do
  case $v in KLRING_*|COMPOSE_*) unset "$v" ;; esac
done

command -v docker >/dev/null || fail "docker is not installed"
command -v python3 >/dev/null || fail "python3 is needed for the JSON checks"
if docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose_cmd=(docker-compose)
else
  fail "neither 'docker compose' nor 'docker-compose' is available"
fi

project="klring-e2e-$(date +%s)-$$"
work=$(mktemp -d)
envfile="$work/e2e.env"
password="e2e-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
coord_password="e2e-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
badclient="$project-badclient"
ok=0
follower=""

compose() { "${compose_cmd[@]}" --env-file "$envfile" -p "$project" -f docker-compose.yml "$@"; }

write_env() { # $1: train.steps
  cat >"$envfile" <<EOF
KLRING_IMAGE_TAG=$tag
KLRING_COORDINATOR_NATS_USER=e2e-coordinator
KLRING_COORDINATOR_NATS_PASSWORD=$coord_password
KLRING_WORKER_NATS_USER=e2e-worker
KLRING_WORKER_NATS_PASSWORD=$password
KLRING_METRICS_PUBLISH=127.0.0.1:
KLRING_JOB=e2e
KLRING_MODEL_PRESET=custom
KLRING_MODEL_N_EMBD=64
KLRING_MODEL_N_LAYER=2
KLRING_MODEL_N_HEAD=2
KLRING_MODEL_CTX=64
KLRING_TRAIN_STEPS=$1
KLRING_TRAIN_BATCH_WINDOWS=24
KLRING_CLUSTER_MIN_WORKERS=2
KLRING_CLUSTER_THREADS=1
KLRING_RUN_CHECKPOINT_EVERY=10
KLRING_RUN_EVAL_EVERY=20
EOF
}

dump_logs() {
  stamp "last logs of every service:"
  compose logs --no-color --tail=40 2>&1 | sed 's/^/    /' || true
  if docker inspect "$badclient" >/dev/null 2>&1; then
    echo "    --- wrong-credentials worker:"
    docker logs --tail=20 "$badclient" 2>&1 | sed 's/^/    /' || true
  fi
}

cleanup() {
  local rc=$?
  set +e
  if [ "$ok" != 1 ]; then dump_logs; fi
  docker rm -f "$badclient" >/dev/null 2>&1
  if [ -n "$follower" ]; then kill "$follower" 2>/dev/null; wait "$follower" 2>/dev/null; fi
  if [ "${E2E_KEEP:-0}" = 1 ]; then
    stamp "E2E_KEEP=1: leaving project $project up (env file $envfile)"
  else
    stamp "tearing down project $project"
    compose down -v --remove-orphans >/dev/null 2>&1 || compose down -v --remove-orphans
    rm -rf "$work"
  fi
  stamp "total $(($(date +%s) - start))s"
  if [ "$ok" = 1 ]; then stamp "PASS"; else stamp "FAILED (exit $rc)"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

running() { [ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }

# fetch NAME: copies /data/NAME out of the coordinator (running or exited)
# into $work/NAME; false when it does not exist yet.
fetch() { docker cp "$coord:/data/$1" "$work/$1" >/dev/null 2>&1; }

# last_step: "STEP WORKERS" of the last complete line of metrics.jsonl, or "0 0".
last_step() {
  if ! fetch metrics.jsonl; then echo "0 0"; return; fi
  python3 - "$work/metrics.jsonl" <<'EOF'
import json, sys
step, workers = 0, 0
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue  # a line being written
    step, workers = m.get("step", 0), m.get("workers", 0)
print(step, workers)
EOF
}

# wait_exit CONTAINER SECONDS: prints the exit code; fails on timeout.
wait_exit() {
  local code
  code=$(timeout "$2" docker wait "$1") || fail "container ${1:0:12} still running after $2s"
  echo "$code"
}

# nats_probe HOST PORT USER PASSWORD: a raw NATS client. Prints
# "auth_required" when the server's INFO demands it, then the server's answer
# to CONNECT + PING ("PONG" when admitted, "-ERR 'Authorization Violation'"
# when refused).
nats_probe() {
  local info="" reply="" connect
  exec 3<>"/dev/tcp/$1/$2" || { echo "unreachable"; return 0; }
  IFS= read -r -t 5 info <&3 || true
  connect='{"verbose":false,"pedantic":false,"protocol":1,"name":"klring-e2e-probe"'
  if [ -n "$3" ]; then connect+=",\"user\":\"$3\",\"pass\":\"$4\""; fi
  connect+='}'
  printf 'CONNECT %s\r\nPING\r\n' "$connect" >&3 || true
  IFS= read -r -t 5 reply <&3 || true
  exec 3<&- 3>&-
  case $info in *'"auth_required":true'*) printf 'auth_required ' ;; esac
  printf '%s\n' "${reply%$'\r'}"
}

stamp "using: ${compose_cmd[*]} ($("${compose_cmd[@]}" version --short 2>/dev/null || true)), project $project"

# 1. Images.
if [ "${E2E_SKIP_BUILD:-0}" = 1 ]; then
  stamp "E2E_SKIP_BUILD=1: reusing klring/*:$tag"
else
  stamp "building images"
  KLRING_IMAGE_TAG=$tag bash scripts/build-images.sh
fi

# 2. NATS, the coordinator and the workers.
write_env "$steps"
stamp "starting nats and the coordinator (train.steps=$steps)"
compose up -d nats coordinator 2>&1 | sed 's/^/    /'
coord=$(compose ps -a -q coordinator)
nats=$(compose ps -a -q nats)
[ -n "$coord" ] && [ -n "$nats" ] || fail "the coordinator or nats did not start"
# Follow the coordinator's log from its start: a step may take only tens of
# milliseconds, so the run must be watched before the workers arrive.
docker logs -f "$coord" >"$work/coordinator.log" 2>&1 &
follower=$!
stamp "starting $workers workers"
compose up -d --no-deps --scale "worker=$workers" worker 2>&1 | sed 's/^/    /'
mapfile -t worker_ids < <(compose ps -a -q worker)
[ "${#worker_ids[@]}" = "$workers" ] || fail "${#worker_ids[@]} workers started; want $workers"

# Published ports, from each container's configuration (valid after it exits).
bindings() { docker inspect -f '{{range $p, $b := .HostConfig.PortBindings}}{{$p}}->{{range $b}}{{.HostIp}}:{{.HostPort}} {{end}}{{end}}' "$1"; }
metrics_port=$(bindings "$coord")
case ${metrics_port% } in
  "9090/tcp->127.0.0.1:" | "9090/tcp->127.0.0.1:0") stamp "metrics port 9090 published on 127.0.0.1 (a free port), nothing else" ;;
  *) fail "the coordinator publishes '$metrics_port'; want only 9090/tcp on 127.0.0.1" ;;
esac
for id in "$nats" "${worker_ids[@]}"; do
  [ -z "$(bindings "$id")" ] || fail "container ${id:0:12} publishes ports: $(bindings "$id")"
done
stamp "no port of nats or the workers is published"

# 3. Step $kill_at with all workers, then kill one (first, so that a fast run
# cannot end before the kill).
stamp "waiting for step $kill_at with $workers workers"
# Read the coordinator's log (one line per committed step with "step=N") to
# kill without delay. When the line does not say how many workers took part,
# metrics.jsonl does.
killed_after=""
while IFS= read -r line; do
  [[ $line =~ (^|[[:space:]])step=([0-9]+) ]] || continue
  n=${BASH_REMATCH[2]}
  [ "$n" -lt "$steps" ] || break
  [ "$n" -ge "$kill_at" ] || continue
  if [[ $line =~ [[:space:]]workers=([0-9]+) ]]; then
    nw=${BASH_REMATCH[1]}
  else
    read -r _ nw < <(last_step)
  fi
  if [ "$nw" = "$workers" ]; then killed_after=$n; break; fi
done < <(timeout "$phase_timeout" tail -s 0.05 -n +1 --pid="$follower" -f "$work/coordinator.log")
if [ -z "$killed_after" ]; then
  read -r step nw < <(last_step)
  [ "$step" -lt "$steps" ] || fail "the run reached its last step ($step) before a step >= $kill_at with $workers workers"
  running "$coord" || fail "the coordinator exited (code $(docker inspect -f '{{.State.ExitCode}}' "$coord")) before a step >= $kill_at with $workers workers (last: step $step, $nw workers)"
  fail "no step >= $kill_at with $workers workers within ${phase_timeout}s (last: step $step, $nw workers)"
fi
victim=${worker_ids[0]}
victim_host=$(docker inspect -f '{{.Config.Hostname}}' "$victim")
docker kill "$victim" >/dev/null || fail "docker kill of worker ${victim:0:12} failed"
at=$(grep -Eo '(^|[[:space:]])step=[0-9]+' "$work/coordinator.log" | tail -1 | tr -dc 0-9)
stamp "killed worker ${victim:0:12} (host name $victim_host) after step $killed_after (docker kill returned at step ${at:-?})"

# 4. Wrong credentials are refused (while the survivors train on).
nats_ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$nats")
network=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}' "$nats")
reachable=0
for _ in 1 2 3 4 5; do
  # Reachable means the server's INFO line arrives (some networks accept
  # any connection).
  if timeout 4 bash -c 'exec 3<>"/dev/tcp/$0/4222" && IFS= read -r -t 3 l <&3 && [[ $l == INFO* ]]' "$nats_ip" 2>/dev/null; then
    reachable=1
    break
  fi
  sleep 0.5
done
if [ "$reachable" = 0 ]; then
  stamp "NOTE: NATS at $nats_ip:4222 is not reachable from this host (Docker Desktop?): raw CONNECT checks skipped"
else
  answer=$(nats_probe "$nats_ip" 4222 e2e-worker "$password")
  [ "$answer" = "auth_required PONG" ] || fail "raw CONNECT with the right credentials: '$answer'; want 'auth_required PONG'"
  answer=$(nats_probe "$nats_ip" 4222 e2e-worker "$coord_password")
  [ "$answer" = "auth_required -ERR 'Authorization Violation'" ] || fail "raw CONNECT as the worker with the coordinator's password: '$answer'; want a refusal"
  answer=$(nats_probe "$nats_ip" 4222 e2e-worker "wrong-$password")
  [ "$answer" = "auth_required -ERR 'Authorization Violation'" ] || fail "raw CONNECT with a wrong password: '$answer'; want a refusal"
  answer=$(nats_probe "$nats_ip" 4222 "" "")
  [ "$answer" = "auth_required -ERR 'Authorization Violation'" ] || fail "raw CONNECT without credentials: '$answer'; want a refusal"
  stamp "NATS admits the right credentials and refuses wrong and missing ones (-ERR 'Authorization Violation')"
  answer=$(python3 scripts/nats-probe.py "$nats_ip" 4222 --user e2e-worker --password "$password" --pub e2e.x --pub klring.e2e.plan --pub _INBOX.e2e.x --pub klring.e2e.hb | tr '\n' '|')
  want="info tls_required=false auth_required=true|connect PONG|pub e2e.x -ERR 'Permissions Violation for Publish to \"e2e.x\"'|pub klring.e2e.plan -ERR 'Permissions Violation for Publish to \"klring.e2e.plan\"'|pub _INBOX.e2e.x -ERR 'Permissions Violation for Publish to \"_INBOX.e2e.x\"'|pub klring.e2e.hb ok|"
  [ "$answer" = "$want" ] || fail "the workers' user publishing: '$answer'; want '$want'"
  stamp "the workers' user may not publish a plan or a reply (_INBOX): -ERR 'Permissions Violation'"
fi

stamp "starting a worker with a wrong password"
docker run -d --name "$badclient" --network "$network" \
  -e KLRING_NATS_URL=nats://nats:4222 -e KLRING_NATS_USER=e2e-worker -e "KLRING_NATS_PASSWORD=wrong-$password" \
  -e KLRING_JOB=e2e "klring/worker:$tag" >/dev/null
code=$(timeout 60 docker wait "$badclient") || fail "the worker with a wrong password still runs after 60s; it must exit non-zero on an authorization violation"
badlog=$(docker logs "$badclient" 2>&1 || true)
[ "$code" != 0 ] || fail "the worker with a wrong password exited 0"
grep -qi "authorization" <<<"$badlog" || fail "the worker with a wrong password exited $code without naming the authorization error: $(tail -3 <<<"$badlog")"
docker rm -f "$badclient" >/dev/null
stamp "refused: the worker exited $code: $(grep -i -m1 authorization <<<"$badlog" | cut -c1-160)"

stamp "waiting for the coordinator to finish $steps steps with $((workers - 1)) workers"
code=$(wait_exit "$coord" "$phase_timeout")
[ "$code" = 0 ] || fail "the coordinator exited $code"
stamp "coordinator exited 0"
for id in "${worker_ids[@]:1}"; do
  code=$(wait_exit "$id" 60)
  [ "$code" = 0 ] || fail "surviving worker ${id:0:12} exited $code at the end of the job; want 0"
done
stamp "surviving workers exited 0"

# 5. Exactly once.
for f in metrics.jsonl ledger.jsonl summary.json loss.png checkpoints; do
  fetch "$f" || fail "/data/$f is missing"
done
newest=$(printf 'step-%06d' "$steps")
[ "$(ls "$work/checkpoints" | sort | tail -1)" = "$newest" ] || fail "the newest checkpoint is '$(ls "$work/checkpoints" | sort | tail -1)'; want $newest"
for f in model.safetensors config.json; do
  [ -s "$work/checkpoints/$newest/$f" ] || fail "checkpoints/$newest/$f is missing"
done
stamp "run dir: summary.json, loss.png, checkpoints $(ls "$work/checkpoints" | tr '\n' ' ')"
cp "$work/metrics.jsonl" "$work/metrics-first.jsonl"
python3 - "$work" "$steps" "$workers" "$killed_after" "$victim_host" <<'EOF' || fail "metrics/ledger checks"
import json, math, sys
work, steps, workers, killed_after, victim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
bad = []
def rows(name):
    out = []
    for i, line in enumerate(open(f"{work}/{name}"), 1):
        try:
            out.append(json.loads(line))
        except ValueError as e:
            bad.append(f"{name}:{i}: not JSON: {e}")
    return out
metrics, ledger = rows("metrics.jsonl"), rows("ledger.jsonl")
summary = json.load(open(f"{work}/summary.json"))
if summary.get("steps") != steps:
    bad.append(f"summary.json steps = {summary.get('steps')!r}; want {steps}")
ms = [m.get("step") for m in metrics]
if ms != list(range(1, steps + 1)):
    bad.append(f"metrics.jsonl steps = {ms}; want 1..{steps}, each once, in order")
for m in metrics:
    for k in ("step", "epoch", "workers", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "compute_s", "allreduce_s", "wait_s"):
        if k not in m:
            bad.append(f"metrics step {m.get('step')}: no {k!r}")
    if not isinstance(m.get("loss"), (int, float)) or not math.isfinite(m["loss"]):
        bad.append(f"metrics step {m.get('step')}: loss = {m.get('loss')!r}; want a finite number")
ls = [e.get("step") for e in ledger]
if ls != list(range(1, steps + 1)):
    bad.append(f"ledger.jsonl steps = {ls}; want 1..{steps}, each once, in order")
sizes = set()
for e in ledger:
    batch = e.get("batch") or []
    sizes.add(len(batch))
    got = [w for r in e.get("ranks", []) for w in r.get("windows", [])]
    if len(set(batch)) != len(batch):
        bad.append(f"ledger step {e.get('step')}: the batch repeats a window: {batch}")
    if len(set(got)) != len(got):
        bad.append(f"ledger step {e.get('step')}: a window counted twice: {got}")
    if sorted(got) != sorted(batch):
        bad.append(f"ledger step {e.get('step')}: ranks' windows {sorted(got)}; want the batch {sorted(batch)}")
    names = [r.get("worker") for r in e.get("ranks", [])]
    if len(set(names)) != len(names) or not all(names):
        bad.append(f"ledger step {e.get('step')}: worker names {names}; want distinct, non-empty")
if len(sizes) > 1:
    bad.append(f"ledger batch sizes {sorted(sizes)}; want one size")
if ledger:
    before = [len(e.get("ranks", [])) for e in ledger if e["step"] <= killed_after]
    if workers not in before:
        bad.append(f"no step up to {killed_after} had {workers} ranks: {before}")
    last = ledger[-1]
    if len(last.get("ranks", [])) != workers - 1:
        bad.append(f"the last step had {len(last.get('ranks', []))} ranks; want {workers - 1} after the kill")
    if metrics and metrics[-1].get("workers") != workers - 1:
        bad.append(f"metrics: the last step had {metrics[-1].get('workers')} workers; want {workers - 1}")
    if any(victim in r.get("worker", "") for r in last.get("ranks", [])):
        bad.append(f"the killed worker ({victim}) still contributed to the last step")
    seen = [e["step"] for e in ledger if any(victim in r.get("worker", "") for r in e.get("ranks", []))]
    note = f"the killed worker ({victim}) contributed to steps {seen[0]}..{seen[-1]}" if seen else f"(worker names do not contain the host name {victim})"
    print(f"    {len(ledger)} steps, batch of {sizes.pop() if len(sizes) == 1 else '?'} windows, each counted once; {note}")
if bad:
    print("\n".join("    " + b for b in bad[:40]), file=sys.stderr)
    sys.exit(1)
EOF
stamp "metrics.jsonl has every step 1..$steps once; ledger.jsonl counts every window exactly once per step"

# 6. Down (keeping the volume), up with more steps: resume from step N. Then
# kill the coordinator mid-run and start it again: it resumes from its newest
# checkpoint, drops the metrics past it, and the running workers follow it.
total=$((steps + more))
stamp "down (keeping the run volume), then up with train.steps=$total"
compose down 2>&1 | sed 's/^/    /'
write_env "$total"
compose up -d nats coordinator 2>&1 | sed 's/^/    /'
coord=$(compose ps -a -q coordinator)
[ -n "$coord" ] || fail "the coordinator did not start again"
docker logs -f "$coord" >"$work/coordinator2.log" 2>&1 &
follower=$!
compose up -d --no-deps --scale "worker=$((workers - 1))" worker 2>&1 | sed 's/^/    /'
mapfile -t worker_ids < <(compose ps -a -q worker)

restart_at=$((steps + restart_after))
reached=""
while IFS= read -r line; do
  [[ $line =~ (^|[[:space:]])step=([0-9]+) ]] || continue
  n=${BASH_REMATCH[2]}
  [ "$n" -lt "$total" ] || break
  if [ "$n" -ge "$restart_at" ]; then reached=$n; break; fi
done < <(timeout "$phase_timeout" tail -s 0.05 -n +1 --pid="$follower" -f "$work/coordinator2.log")
resumed=$(grep -m1 "resumed from checkpoint" "$work/coordinator2.log" || true)
grep -Eq "step=$steps([^0-9]|$)" <<<"$resumed" || fail "the coordinator's log does not say it resumed from step $steps (got: '${resumed:-nothing}')"
stamp "coordinator: $(cut -c1-160 <<<"$resumed")"
[ -n "$reached" ] || fail "the resumed run did not reach step $restart_at before its end ($total) or within ${phase_timeout}s"
# Membership churn: a worker leaves (SIGTERM) and a new one joins, so the
# epoch climbs past what a restarted coordinator starts from.
for i in $(seq 1 "$churn"); do
  leaver=${worker_ids[0]}
  docker stop -t 20 "$leaver" >/dev/null || fail "docker stop of worker ${leaver:0:12} failed"
  compose up -d --no-deps --scale "worker=$((workers - 1))" worker >/dev/null 2>&1 || fail "starting a worker again (cycle $i)"
  mapfile -t worker_ids < <(compose ps -q worker)
  stamp "churn $i/$churn: worker ${leaver:0:12} left, ${#worker_ids[@]} workers running"
done
epoch=0
for _ in $(seq 1 60); do # the coordinator's log, as docker writes it
  epoch=$(grep -Eo 'msg=membership epoch=[0-9]+' "$work/coordinator2.log" | tail -1 | tr -dc 0-9)
  [ "${epoch:-0}" -le "$churn" ] || break
  sleep 0.5
done
stamp "membership epoch is ${epoch:-?} before the coordinator is killed"
[ "${epoch:-0}" -gt "$churn" ] || fail "the epoch did not climb with the churn (epoch ${epoch:-none})"
running "$coord" || fail "the coordinator ended before it could be killed (make E2E_MORE_STEPS larger)"
docker kill "$coord" >/dev/null || fail "docker kill of the coordinator failed"
wait "$follower" 2>/dev/null || true
follower=""
# Steps take tens of milliseconds: the coordinator may commit (and
# checkpoint) a few more before the kill lands. Its log, complete up to the
# kill, says how far it got; a checkpoint is logged after its step.
died_at=$(grep -Eo '(^|[[:space:]])step=[0-9]+' "$work/coordinator2.log" | tail -1 | tr -dc 0-9)
died_at=${died_at:-$reached}
stamp "killed the coordinator after step $reached (its last log line names step $died_at); starting it again"
compose up -d --no-deps coordinator 2>&1 | sed 's/^/    /'
coord=$(compose ps -a -q coordinator)
code=$(wait_exit "$coord" "$phase_timeout")
[ "$code" = 0 ] || fail "the restarted coordinator exited $code"
for id in "${worker_ids[@]}"; do
  code=$(wait_exit "$id" 60)
  [ "$code" = 0 ] || fail "worker ${id:0:12} exited $code at the end of the job; want 0"
done
stamp "coordinator and workers exited 0"
again=$(docker logs "$coord" 2>&1 | grep "resumed from checkpoint" | tail -1 || true)
ckpt=$(grep -Eo '(^|[[:space:]])step=[0-9]+' <<<"$again" | tr -dc 0-9)
[ -n "$ckpt" ] && [ "$ckpt" -gt "$steps" ] && [ "$ckpt" -le "$died_at" ] ||
  fail "after the restart the coordinator's log says '${again:-nothing}'; want a resume from a checkpoint in $((steps + 1))..$died_at"
stamp "coordinator: $(cut -c1-160 <<<"$again")"
fetch metrics.jsonl || fail "/data/metrics.jsonl is missing after the resume"
fetch ledger.jsonl || fail "/data/ledger.jsonl is missing after the resume"
python3 - "$work" "$steps" "$total" <<'EOF' || fail "metrics and ledger after the restarts"
import json, sys
work, steps, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
first = open(f"{work}/metrics-first.jsonl").read().splitlines()
now = open(f"{work}/metrics.jsonl").read().splitlines()
got = [json.loads(l)["step"] for l in now]
if got != list(range(1, total + 1)):
    sys.exit(f"    steps after the restarts = {got}; want 1..{total}, each once")
if now[:steps] != first:
    sys.exit(f"    the lines of steps 1..{steps} changed across the restart")
ledger = [json.loads(l) for l in open(f"{work}/ledger.jsonl")]
if [e["step"] for e in ledger] != list(range(1, total + 1)):
    sys.exit(f"    ledger steps after the restarts = {[e['step'] for e in ledger]}; want 1..{total}, each once")
for e in ledger:
    got = [w for r in e["ranks"] for w in r["windows"]]
    if len(set(got)) != len(got) or sorted(got) != sorted(e["batch"]):
        sys.exit(f"    ledger step {e['step']}: ranks' windows {sorted(got)}; want the batch {sorted(e['batch'])}, each once")
print(f"    steps 1..{steps} unchanged, {steps + 1}..{total} each once, in metrics and ledger; every window counted once")
EOF
stamp "metrics and ledger continue at step $((steps + 1)) through $total, each step once"
vol=$(docker inspect -f '{{range .Mounts}}{{if eq .Destination "/data"}}{{.Name}}{{end}}{{end}}' "$coord")
[ -n "$vol" ] || fail "the coordinator's run volume was not found"
docker run --rm -v "$vol:/data" "klring/coordinator:$tag" verify /data 2>&1 | sed 's/^/    /'
[ "${PIPESTATUS[0]}" = 0 ] || fail "coordinator verify found a problem in the run dir"
stamp "coordinator verify: the run dir is consistent"

stamp "single-host checks passed in $(($(date +%s) - start))s; tearing down project $project"
compose down -v --remove-orphans >/dev/null 2>&1 || compose down -v --remove-orphans

# 8. Across machines: the head node and a worker node, over TLS.
if [ "${E2E_SKIP_MULTIHOST:-0}" = 1 ]; then
  stamp "E2E_SKIP_MULTIHOST=1: multi-host checks skipped"
else
  E2E_IMAGE_TAG=$tag bash scripts/e2e-multihost.sh || fail "multi-host checks (scripts/e2e-multihost.sh)"
fi

# 9. Over a NATS cluster, one server killed mid-run.
if [ "${E2E_SKIP_CLUSTER:-0}" = 1 ]; then
  stamp "E2E_SKIP_CLUSTER=1: cluster checks skipped"
else
  E2E_IMAGE_TAG=$tag bash scripts/e2e-cluster.sh || fail "cluster checks (scripts/e2e-cluster.sh)"
fi

elapsed=$(($(date +%s) - start))
[ "$elapsed" -le 480 ] || stamp "WARNING: took ${elapsed}s, more than the 8 minutes it should"
ok=1
