# Two commands do everything: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages of the real servers the integration tests start (on free ports), and of the
# container tier (tests/containers: podman builds and runs the images; root only).
DEBIAN_PACKAGES := mosquitto mosquitto-clients victoria-metrics influxdb influxdb-client chromium chromium-driver nats-server socat
CONTAINER_PACKAGES := podman runc buildah debootstrap uidmap slirp4netns fuse-overlayfs

.PHONY: demo test lint unit integration bench install system-packages clean proto

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,demo]"
	touch $(STAMP)

install: $(STAMP)

system-packages:
	@missing=""; for p in $(DEBIAN_PACKAGES) $$([ "$$(id -u)" = 0 ] && echo $(CONTAINER_PACKAGES)); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
	  echo "missing Debian packages:$$missing -- run: sudo apt-get install -y$$missing" >&2; \
	  echo "(integration tests that need them will be skipped)" >&2; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP) system-packages
	$(BIN)/pytest -q tests/integration

test: $(STAMP) system-packages lint
	@$(BIN)/python -c "from tests.support.podman_stack import podman_available as a; r = a(); \
	  print('container tier: ' + ('runs (podman)' if r is None else 'SKIPPED: ' + r))"
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/gateway demo

bench: $(STAMP) system-packages
	$(BIN)/python -m bench.modbus_mqtt --devices 10 --tags 100 --period 1 --duration 20

# The Sparkplug B payload code is generated from its schema and committed; regenerate it after
# editing the .proto (grpcio-tools carries protoc; it is needed only here).
SPARKPLUG := gateway/sinks/sparkplug
proto:
	$(PYTHON) -m venv /tmp/edge-gateway-protoc
	/tmp/edge-gateway-protoc/bin/pip install --quiet "grpcio-tools==1.85.1"
	cd $(SPARKPLUG) && /tmp/edge-gateway-protoc/bin/python -m grpc_tools.protoc -I. \
	  --python_out=. --pyi_out=. sparkplug_b.proto

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
