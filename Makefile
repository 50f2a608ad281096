# Flywheel: the front door. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

##@ Development

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} \
		/^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } \
		/^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "uv==0.13.9"
	$(UV) pip install --quiet --python $(BIN)/python -c constraints.txt -e '.[operator,serving,dev]'
	touch $@

.PHONY: venv
venv: $(STAMP) ## Create .venv with the locked versions (constraints.txt).

.PHONY: lock
lock: $(STAMP) ## Re-resolve constraints.txt from pyproject.toml (after changing dependencies).
	$(UV) pip compile --quiet pyproject.toml --all-extras --python-version 3.11 -o constraints.txt

.PHONY: manifests
manifests: $(STAMP) ## Generate crds/ (and the chart's copy) from the API models.
	$(BIN)/python -m flywheel.crdgen crds charts/flywheel/files/crds
	$(BIN)/python -m flywheel.crdgen.apidocs docs/api-reference.md

PROTO_DIR := serving/flywheel_serving/oip_grpc

.PHONY: proto
proto: $(STAMP) ## Regenerate the gRPC messages (oip_grpc/grpc_predict_v2_pb2.py, .pyi) from the .proto.
	$(BIN)/python -m grpc_tools.protoc -I$(PROTO_DIR) --python_out=$(PROTO_DIR) --pyi_out=$(PROTO_DIR) \
		$(PROTO_DIR)/grpc_predict_v2.proto

.PHONY: lint
lint: $(STAMP) ## ruff, ruff format --check, mypy --strict, import-linter, CRD drift, hadolint.
	$(BIN)/ruff check --no-cache operator serving hack bench tests
	$(BIN)/ruff format --no-cache --check operator serving hack bench tests
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m flywheel.crdgen --check crds charts/flywheel/files/crds
	$(BIN)/python -m flywheel.crdgen.apidocs --check docs/api-reference.md
	$(BIN)/hadolint operator/Dockerfile serving/Dockerfile

.PHONY: fmt
fmt: $(STAMP) ## Format and auto-fix.
	$(BIN)/ruff format operator serving hack bench tests
	$(BIN)/ruff check --fix operator serving hack bench tests

.PHONY: demo
demo: $(STAMP) images-local ## The whole loop on the local cluster, narrated, its pods from the real images (builds binaries and images if needed).
	PYTHONPATH=hack $(BIN)/python -m demo --cluster-dir $(CLUSTER_DIR)

.PHONY: demo-down
demo-down: $(STAMP) ## Stop the demo's cluster; nothing is left running.
	$(DEVCLUSTER) down --dir $(CLUSTER_DIR)

.PHONY: test
test: $(STAMP) images-local ## Run the whole test suite (the cluster's Flywheel pods run from the images).
	$(BIN)/pytest $(PYTEST_ARGS)

.PHONY: run
run: $(STAMP) ## Run the operator in the foreground against the cluster in KUBECONFIG.
	FLYWHEEL_LIVENESS_PORT=$${FLYWHEEL_LIVENESS_PORT:-8080} $(BIN)/python -m flywheel --verbose

##@ Local cluster (pinned upstream binaries, no Docker)

CLUSTER_DIR ?= $(CURDIR)/.cluster
NODES ?= 1
DEVCLUSTER := PYTHONPATH=hack $(BIN)/python -m devcluster

.PHONY: k8s-binaries
k8s-binaries: ## Build (or reuse) kube-apiserver, controller-manager, scheduler, kubectl, etcd, helm.
	bash hack/build-k8s.sh

.PHONY: prometheus
prometheus: $(STAMP) ## Fetch Debian's prometheus package into the user cache (for the monitor tests).
	$(BIN)/python -c "from tests.support.prometheus import ensure_prometheus; print(ensure_prometheus())"

.PHONY: cluster-up
cluster-up: $(STAMP) ## Start the local cluster (reused when already running); NODES=2 for two nodes.
	$(DEVCLUSTER) up --dir $(CLUSTER_DIR) --nodes $(NODES)

.PHONY: cluster-down
cluster-down: $(STAMP) ## Stop the local cluster; no process is left behind.
	$(DEVCLUSTER) down --dir $(CLUSTER_DIR)

.PHONY: cluster-status
cluster-status: $(STAMP) ## Components, pids and memory of the local cluster.
	$(DEVCLUSTER) status --dir $(CLUSTER_DIR)

.PHONY: cluster-env
cluster-env: $(STAMP) ## Print exports for the cluster: eval "$$(make -s cluster-env)".
	@$(DEVCLUSTER) env --dir $(CLUSTER_DIR)

.PHONY: clean
clean: ## Remove the virtualenv and caches.
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

##@ Images without Docker (mmdebstrap + buildah; the same Dockerfiles as `make images`)

IMAGES := PYTHONPATH=hack $(BIN)/python -m images

.PHONY: images-local
images-local: $(STAMP) ## Build both images with buildah, unpacked for the local node (cached by content).
	$(IMAGES) build

.PHONY: images-show
images-show: $(STAMP) ## The locally built images: reference, root file system, command, user, size.
	@$(IMAGES) show

##@ Try it on kind (needs Docker and kind; not used by the tests)

KIND ?= kind
KIND_CLUSTER ?= flywheel
DOCKER ?= docker
HELM ?= helm
VERSION ?= 0.1.0
OPERATOR_IMAGE ?= ghcr.io/flywheel-dev/flywheel-operator:$(VERSION)
SERVING_IMAGE ?= ghcr.io/flywheel-dev/flywheel-serving:$(VERSION)
REVISION = $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)

.PHONY: kind-up
kind-up: ## Create the kind cluster from kind-config.yaml (reused when it exists).
	$(KIND) get clusters | grep -qx $(KIND_CLUSTER) || $(KIND) create cluster --config kind-config.yaml --name $(KIND_CLUSTER)

.PHONY: images
images: ## Build the operator and serving images with Docker.
	$(DOCKER) build -f operator/Dockerfile --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(OPERATOR_IMAGE) .
	$(DOCKER) build -f serving/Dockerfile --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(SERVING_IMAGE) .

.PHONY: kind-load
kind-load: ## Load the built images into the kind cluster's nodes.
	$(KIND) load docker-image --name $(KIND_CLUSTER) $(OPERATOR_IMAGE) $(SERVING_IMAGE)

.PHONY: deploy
deploy: ## Install (or upgrade) the chart into flywheel-system on the current kube context.
	kubectl create namespace flywheel-system --dry-run=client -o yaml | kubectl apply -f -
	kubectl label namespace flywheel-system pod-security.kubernetes.io/enforce=restricted --overwrite
	$(HELM) upgrade --install flywheel charts/flywheel --namespace flywheel-system --wait \
		--set image.pullPolicy=Never --set image.tag=$(VERSION) --set servingImage.tag=$(VERSION)

.PHONY: undeploy
undeploy: ## Uninstall the chart (the CRDs and your objects stay: crds.keep).
	$(HELM) uninstall flywheel --namespace flywheel-system --wait
