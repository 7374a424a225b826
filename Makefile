# Entry points. Each target is a thin wrapper around a script or command, so
# the scripts remain the single source of truth.
.PHONY: help test sim images e2e

help:
	@echo "make test    # gofmt, vet, every test, race tests (scripts/test.sh)"
	@echo "make sim     # a whole job in one process: coordinator sim"
	@echo "make images  # static binaries in FROM scratch images for docker-compose.yml"
	@echo "make e2e     # the docker-compose end-to-end check (scripts/e2e-compose.sh)"

test:
	bash scripts/test.sh

sim:
	go run ./cmd/coordinator sim

images:
	bash scripts/build-images.sh

e2e:
	bash scripts/e2e-compose.sh
