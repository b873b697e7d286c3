# kizuna: `make demo` runs the simulated demo, `make test` runs lint and the test suite.
# Everything lives in .venv; the first run creates and fills it, later runs reuse it.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# torch is installed first, pinned: an unpinned torch (asked for directly or by a dependency)
# makes pip fetch a multi-GB CUDA build. Pass an index for CPU wheels on other machines, e.g.
# `make install TORCH_PIP_ARGS="--index-url <pytorch cpu wheel index>"`.
TORCH_VERSION := 2.13.0
TORCH_PIP_ARGS ?=
# Debian/Ubuntu libraries MuJoCo's offscreen renderer loads (EGL, OSMesa, GL).
# libusb-1.0-0: open3d (the calib extra) loads it at import.
# chromium: tests/kizuna/test_report_html.py loads the
# adapt report in headless Chromium to check that its embedded H.264 videos play.
SYSTEM_PACKAGES := libegl1 libosmesa6 libgl1 chromium libusb-1.0-0

export PIP_DISABLE_PIP_VERSION_CHECK := 1
export MUJOCO_GL ?= egl

.PHONY: help venv system-packages install demo test lint format clean distclean

help:
	@echo "make demo   run the simulated demo into demo_out/ (sets up .venv first)"
	@echo "make test   ruff + pytest (sets up .venv first)"
	@echo "make install | lint | format | clean | distclean"

venv: $(PY) system-packages

$(PY):
	$(PYTHON) -m venv $(VENV)

# Installs the renderer's system libraries only when dpkg says they are missing, and only as
# root with apt; otherwise it prints what to install and goes on.
system-packages:
	@command -v dpkg-query >/dev/null || exit 0; \
	missing=""; \
	for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing system packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y --no-install-recommends $$missing; \
	else \
	  echo "note: MuJoCo rendering needs these system packages:$$missing"; \
	  echo "      sudo apt-get install -y --no-install-recommends$$missing"; \
	fi

# Re-runs only when the packaging files change. PyBullet (and panda-gym, which needs it) have
# no wheels for Python >= 3.12: there the extras are left out and PyBullet tests skip.
$(STAMP): setup.py setup.cfg pyproject.toml package.xml Makefile | venv
	$(PIP) install --upgrade pip setuptools wheel
	$(PIP) install $(TORCH_PIP_ARGS) torch==$(TORCH_VERSION)
	@extras=pybullet,bench,ray,remote,rl,vla,ros,calib,dev; \
	if ! $(PY) -c 'import sys; sys.exit(sys.version_info >= (3, 12))'; then \
	  extras=ray,remote,rl,vla,ros,calib,dev; echo "Python >= 3.12: skipping the pybullet and bench extras (no wheels)"; \
	fi; \
	echo "$(PIP) install -e '.[$$extras]'"; \
	$(PIP) install -e ".[$$extras]"
	touch $@

install: $(STAMP)

demo: install
	$(VENV)/bin/kizuna demo --out demo_out

test: install
	$(PY) -m ruff check . && $(PY) -m ruff format --check . && $(PY) -m pytest

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

clean:
	rm -rf build/ *.egg-info .pytest_cache .ruff_cache .hypothesis demo_out/
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
