# Everything a fresh machine needs, from the project's own files.
# torch is pinned to the CPU wheel (an unpinned torch pulls several GB of CUDA packages).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test test-browser install install-test install-bench install-digress install-serve clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e .
	touch $@

# k-diffusion is a reference for tests (its LMS coefficients); --no-deps keeps its torchvision out
$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e ".[test,text]"
	$(PIP) --no-deps k-diffusion==0.1.1.post1
	touch $@

# Reference libraries for benchmarks/ only.  k-diffusion, azula and smalldiffusion declare torchvision,
# which would replace the CPU torch: they are installed without their dependencies (their sampling
# code needs none of it), plus the small pure-Python packages that code does import.
$(VENV)/.installed-bench: $(VENV)/.installed-test
	$(PIP) einops
	$(PIP) --no-deps azula==0.11.1 smalldiffusion==0.5.0
	# MOSES metrics (benchmarks/molecules_moses.py): molsets pins 2020's numpy/pandas/torch, so it and fcd_torch
	# (which ships the ChemNet weights) go in without dependencies; their metric code needs RDKit, pandas, scipy
	# and matplotlib, and MOSES's data sets ship inside the molsets wheel
	$(PIP) rdkit matplotlib pandas
	$(PIP) --no-deps molsets==0.3.1 fcd_torch==1.0.7
	touch $@

# DiGress itself for benchmarks/molecules_digress.py: its source at a pinned commit, read as a reference, and the
# packages its code imports in a folder of their own (the script puts it on its path), so that none of them enters
# the project's environment; --no-deps because they would pull another torch
DIGRESS_COMMIT := 780242b8d3e7d78316bb5cf90c639fb0cd4c6079
$(VENV)/.installed-digress: $(VENV)/.installed-bench
	[ -d build/DiGress ] || git clone --quiet https://github.com/cvignac/DiGress build/DiGress
	git -C build/DiGress checkout --quiet $(DIGRESS_COMMIT)
	$(PIP) --no-deps --target build/digress-site torch_geometric==2.8.1 pytorch-lightning==2.6.6 \
		lightning-utilities==0.15.3 torchmetrics==1.9.0 omegaconf==2.4.0 antlr4-python3-runtime==4.9.3 \
		overrides==7.7.0 fsspec xxhash psutil aiohttp
	touch $@

# The web page (unnoise serve) and its browser tests: Gradio and Playwright's Python package, driving the
# distribution's Chromium (Playwright's own browser download is never used)
$(VENV)/.installed-serve: $(VENV)/.installed
	$(PIP) -e ".[serve]"
	touch $@

$(VENV)/.installed-browser: $(VENV)/.installed-test
	command -v chromium >/dev/null || { $$([ "$$(id -u)" -eq 0 ] || echo sudo) apt-get update -qq && \
		$$([ "$$(id -u)" -eq 0 ] || echo sudo) apt-get install -y -qq chromium; }
	$(PIP) -e ".[serve,browser-test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
install-bench: $(VENV)/.installed-bench
install-digress: $(VENV)/.installed-digress
install-serve: $(VENV)/.installed-serve

demo: $(VENV)/.installed
	$(VENV)/bin/unnoise demo --overwrite

# pytest exits 5 when it collects no test: not a failure of the build
test: $(VENV)/.installed-test
	$(PY) -m pytest -q -p no:cacheprovider || [ $$? -eq 5 ]

# the page of 'unnoise serve' in a headless Chromium; screenshots go to $(SCREENSHOTS)
SCREENSHOTS ?= build/screenshots
test-browser: $(VENV)/.installed-browser
	UNNOISE_SCREENSHOTS=$(SCREENSHOTS) $(PY) -m pytest -q -p no:cacheprovider -m browser tests/test_serve.py

clean:
	rm -rf $(VENV) demo_out build src/*.egg-info
