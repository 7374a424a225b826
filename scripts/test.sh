#!/usr/bin/env bash
# The test command of the README: formatting, vet, every test, and the
# concurrent packages again under the race detector.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== gofmt"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

echo "== go test"
# scale/ times shaped links against a cost model: it runs alone, after the
# rest, so that other packages' tests do not share its two cores.
go test -count=1 -timeout 20m $(go list ./... | grep -v '/scale$')
go test -count=1 -timeout 10m ./scale/...

echo "== go test -race (concurrent packages)"
go test -count=1 -race -timeout 20m ./kernels/... ./allreduce/... ./natsnet/... ./cluster/...
