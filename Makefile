# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench bench-full bench-smoke clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all,test]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

demo: $(STAMP)
	$(PY) -m experiments.demo --out results/demo

# Benchmarks print their figures and save them under results/benchmarks/ (JSON).
BENCH_DATA := results/bench_data
bench: $(STAMP)
	$(PY) benchmarks/losses.py
	$(PY) benchmarks/synthetic.py
	test -d $(BENCH_DATA)/raw || $(PY) -m data_prep.synthetic --format rhd --out $(BENCH_DATA)/raw \
		--num-train 200 --num-eval 20 --seed 0
	test -d $(BENCH_DATA)/tfds || $(PY) -m data_prep.build --dataset rhd --config synthetic \
		--manual_dir $(BENCH_DATA)/raw --data_dir $(BENCH_DATA)/tfds
	$(PY) benchmarks/input_pipeline.py --data_dir $(BENCH_DATA)/tfds
	$(PY) benchmarks/batch_transport.py
	$(PY) benchmarks/train_step.py --skip_full

# Paper-size steps (256² crops, batch 32): slow on a laptop CPU.
bench-full: bench
	$(PY) benchmarks/model_step.py
	$(PY) benchmarks/train_step.py

# Every benchmark script in its --smoke mode (seconds each, figures meaningless), the GPU
# branches lowered for CUDA; `make test` runs all but the slow ones.
bench-smoke: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow" tests/benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
