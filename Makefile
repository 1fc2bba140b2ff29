# Everything a fresh machine needs, from the project's own files.
# torch is pinned to the CPU wheel (an unpinned torch pulls several GB of CUDA packages).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test install install-test install-bench clean

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
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
install-bench: $(VENV)/.installed-bench

demo: $(VENV)/.installed
	$(VENV)/bin/unnoise demo

# pytest exits 5 when it collects no test: not a failure of the build
test: $(VENV)/.installed-test
	$(PY) -m pytest -q -p no:cacheprovider || [ $$? -eq 5 ]

clean:
	rm -rf $(VENV) demo_out build src/*.egg-info
