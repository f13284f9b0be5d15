# Ravada VDI: the ravada.vdi collection and its Python runtime.
# `make help` lists the targets.

SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -euo pipefail -c

VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# One venv for everything, from Debian's python3 with the system site packages:
# the runtime's tests need Debian's python3-libvirt (same as on the servers).
PYTHON := /usr/bin/python3
export PATH := $(BIN):$(PATH)
export ANSIBLE_FORCE_COLOR ?= $(if $(CI),0,1)

# The desktop guest of the demo, the e2e and the KVM tests (scripts/build-guest-image.sh):
# built once per machine, cached by a checksum of its recipe.
export RAVADA_IMAGE_CACHE ?= /var/cache/ravada-ci
export RAVADA_GUEST_IMAGE := $(RAVADA_IMAGE_CACHE)/debian-desktop.qcow2

DEMO_NAME := ravada-demo
DEMO_IMAGE := local/debian-systemd:12
# docker run options from ../shared/notes/containers.md (systemd + KVM, no --privileged).
DOCKER_SYSTEMD_OPTS := \
	--cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add NET_RAW --cap-add SYS_PTRACE --cap-add IPC_LOCK \
	--security-opt seccomp=unconfined --security-opt apparmor=unconfined \
	--cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock \
	--device /dev/kvm --device /dev/net/tun --stop-signal SIGRTMIN+3

# The test OpenID provider's npm packages, installed from the lock (tests/oidc_provider.py
# does the same when pytest runs alone); nothing is fetched while they match the lock.
OIDC_DIR := runtime/tests/oidc

.PHONY: help venv lint test-runtime oidc-provider docker images guest-image molecule molecule-nodes test demo demo-destroy bench build clean distclean messages translations

help:
	@echo "make venv          .venv from $(PYTHON) --system-site-packages + tooling + runtime[test]"
	@echo "make lint          yamllint, ansible-lint (production profile), ruff on runtime/"
	@echo "make test-runtime  the runtime's pytest suite"
	@echo "make guest-image   the Debian desktop qcow2 (cached in $(RAVADA_IMAGE_CACHE))"
	@echo "make molecule      molecule test -s default (Debian 12 and 13 systemd containers)"
	@echo "make molecule-nodes molecule test -s nodes (a broker and two hypervisor nodes, Debian 12)"
	@echo "make test          lint + test-runtime + molecule + molecule-nodes"
	@echo "make demo          one Debian 12 container 'ravada-demo' deployed with inventories/local"
	@echo "make bench         benchmarks (bench/README.md); P1/P5 need a deployed host"
	@echo "make build         ansible-galaxy collection build"
	@echo "make messages      extract the front's strings, update every catalogue (.po)"
	@echo "make translations  compile the catalogues (.po -> .mo, committed)"
	@echo "make clean         remove the demo container, molecule instances and caches"

$(VENV)/.installed: requirements-dev.txt runtime/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt -e 'runtime[test]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	yamllint .
	ansible-lint
	cd runtime && ruff check .
	cd $(CURDIR) && ruff check bench
	# bench/README.md, README.md, docs/: every quoted figure is a current result's
	$(BIN)/python bench/report.py --check --strict

$(OIDC_DIR)/node_modules/.package-lock.json: $(OIDC_DIR)/package.json $(OIDC_DIR)/package-lock.json
	cd $(OIDC_DIR) && npm ci --prefer-offline --no-audit --no-fund
	touch $(CURDIR)/$@

oidc-provider: $(OIDC_DIR)/node_modules/.package-lock.json

test-runtime: venv guest-image oidc-provider
	cd runtime && ../$(VENV)/bin/pytest -q

docker:
	bash scripts/ensure-docker.sh

images: docker
	bash scripts/build-image.sh 12
	bash scripts/build-image.sh 13

guest-image:
	bash scripts/build-guest-image.sh >/dev/null

molecule: venv images guest-image
	molecule test -s default $(if $(CI),--no-command-borders,)

# `make test` runs it after `molecule` (prerequisites in order, no -j: never two scenarios at
# once); no dependency on `molecule`, so that make -k still runs it when the other failed.
molecule-nodes: venv images guest-image
	molecule test -s nodes $(if $(CI),--no-command-borders,)

test: lint test-runtime molecule molecule-nodes

demo: venv docker guest-image
	bash scripts/build-image.sh 12
	if ! docker container inspect $(DEMO_NAME) >/dev/null 2>&1; then
		docker run -d --name $(DEMO_NAME) --hostname $(DEMO_NAME) $(DOCKER_SYSTEMD_OPTS) \
			$(DEMO_IMAGE) /lib/systemd/systemd >/dev/null
	fi
	docker start $(DEMO_NAME) >/dev/null
	docker exec $(DEMO_NAME) systemctl is-system-running --wait >/dev/null || true
	ansible-playbook -i inventories/local site.yml
	ip=$$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' $(DEMO_NAME))
	user=$$(awk '/^rvd_admin_user:/ {print $$2}' inventories/local/group_vars/ravada.yml)
	pass=$$(awk '/^rvd_admin_password:/ {print $$2}' inventories/local/group_vars/ravada.yml)
	echo
	echo "Ravada demo: https://$$ip/  (self-signed certificate)"
	echo "  user: $$user  password: $$pass"

bench: venv
	bash bench/run.sh

demo-destroy:
	docker rm -f $(DEMO_NAME) >/dev/null 2>&1 || true

build:
	ansible-galaxy collection build --force --output-path dist/

# The front's languages (README "Languages"): extract the marked strings into messages.pot,
# merge them into every <lang>/LC_MESSAGES/messages.po (no fuzzy guesses), compile the .mo.
I18N := src/ravada/front/translations
messages: venv
	cd runtime
	$(BIN)/pybabel extract -F babel.cfg -k N_ -k lazy_gettext -k Text -k Refusal \
		-k HardwareError -k PolicyError -k TotpError -k GroupError:2 --no-location \
		--sort-output -o $(I18N)/messages.pot src/ravada
	$(BIN)/pybabel update -N --ignore-obsolete -i $(I18N)/messages.pot -d $(I18N)

translations: venv
	cd runtime && $(BIN)/pybabel compile -d $(I18N)

clean: demo-destroy
	-test -x $(BIN)/molecule && molecule destroy -s default
	-test -x $(BIN)/molecule && molecule destroy -s nodes
	rm -rf dist/ .cache/ .pytest_cache/ .ruff_cache/ runtime/.pytest_cache runtime/.ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV)
	-docker image rm local/debian-systemd:12 local/debian-systemd:13
