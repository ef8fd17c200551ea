# Two commands from a fresh clone on Debian 12 (as root):
#   make demo   installs what it needs and runs the demo alliance on http://127.0.0.1:8000
#   make test   installs what it needs and runs the whole test suite
PYTHON ?= python3
VENV := .venv
BUILD := .build
NODE_PREFIX := $(BUILD)/node
PROXY := $(NODE_PREFIX)/node_modules/.bin/configurable-http-proxy
# Debian packages: the workspace sandbox, Node.js for the proxy, and what the tests drive for real
# (the tests start their own Docker engine and build the images from a debootstrap root filesystem;
# fonts-noto-cjk so that the browser tests' screenshots show Chinese, not boxes).
DEMO_DEBS := bubblewrap util-linux iproute2 iptables nodejs npm python3-venv
TEST_DEBS := $(DEMO_DEBS) chromium fonts-noto-cjk prometheus docker.io debootstrap postgresql

.PHONY: demo test install install-test clean

demo: install
	$(VENV)/bin/gpu-commons demo --proxy-command $(abspath $(PROXY))

test: install-test
	$(VENV)/bin/python -m pytest -ra $(PYTEST_ARGS)

DEMO_LIBRARY := data/demo/library

install: $(BUILD)/debs-demo.stamp $(VENV)/.installed $(PROXY) $(DEMO_LIBRARY)/catalogue.json
install-test: $(BUILD)/debs-test.stamp $(VENV)/.installed-test $(PROXY) $(DEMO_LIBRARY)/catalogue.json

$(BUILD)/debs-%.stamp:
	mkdir -p $(BUILD)
	scripts/install-debs.sh $(if $(filter test,$*),$(TEST_DEBS),$(DEMO_DEBS))
	touch $@

# The workspace distribution is installed as a copy (its data files: the JupyterLab extension and
# settings), so a change to its code or its message catalogues installs it again.
$(VENV)/.installed: pyproject.toml workspace/pyproject.toml $(wildcard workspace/gpu_commons_*/*.py workspace/gpu_commons_i18n/locales/*/LC_MESSAGES/*.po)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e . ./workspace
	$(VENV)/bin/python -m gpu_commons_workspace.static_files  # JupyterLab's scripts precompressed (brotli)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

# The demo's library (docs/library.md): scikit-learn's bundled datasets as CSV and jieba's dictionary,
# written from the installed packages and put in place, checked, read-only in every workspace.
$(VENV)/.installed-library: $(VENV)/.installed pyproject.toml
	$(VENV)/bin/pip install --quiet -e '.[library]'
	touch $@

$(DEMO_LIBRARY)/catalogue.json: $(VENV)/.installed-library alliances/demo.yaml hub/demo_library.py
	$(VENV)/bin/python -m hub.demo_library $(BUILD)/library-sources
	$(VENV)/bin/gpu-commons library add --all --from-dir $(BUILD)/library-sources --alliance alliances/demo.yaml --root $(DEMO_LIBRARY)

$(PROXY):
	npm install --silent --prefix $(NODE_PREFIX) configurable-http-proxy@4

clean:
	rm -rf $(VENV) $(BUILD) data
