# excamera: two commands matter. `make demo` and `make test`; both call `make setup`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
DEMO_DIR ?= demo-out

.PHONY: setup demo test test-rust test-python lint bench clean lambda-zip wheel

$(VENV)/.deps: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q 'maturin>=1.7,<2'
	$(VENV)/bin/maturin develop --release -q -E dev
	touch $@

# setup: the venv with every dependency (the dev extra: every other extra and the test and lint
# tools), plus a release build of the Rust extension
# (cargo makes the rebuild incremental, so this is cheap when nothing changed).
setup: $(VENV)/.deps
	$(VENV)/bin/maturin develop --release -q --skip-install 2>/dev/null || $(VENV)/bin/maturin develop --release -q

demo: setup
	$(PY) -m excamera demo $(DEMO_DIR)

test: setup test-rust test-python

test-rust:
	cargo test --release --workspace --exclude xc-python -q

test-python:
	$(PY) -m pytest -q

lint: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --release --all-targets -- -D warnings
	cargo clippy -p xc --release --all-targets --features internals -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc -p xc --no-deps -q
	$(VENV)/bin/ruff check python tests bench

# bench: regenerates every committed bench/*-results.json with the settings the README quotes
# (each file records the command that wrote it; tests/test_bench_results.py holds them to this
# recipe). About thirty-five minutes on this 2-core machine (pipeline_speed.py fifteen of them);
# scale.py's 10,000 workers need about 12 GB of memory at their peak.
bench: setup
	$(PY) bench/relay.py --json bench/relay-results.json
	$(PY) bench/decode.py --runs 5 --json bench/decode-results.json
	$(PY) bench/encode.py --bus --chunk 6 --runs 2 --json bench/encode-results.json
	$(PY) bench/excamera.py --clip carphone_qcif_120f.y4m --chunk 6 --batch 16 --workers 2 --json bench/excamera-results.json
	$(PY) bench/excamera.py --clip carphone_qcif_120f.y4m --chunk 6 --batch 16 --workers 2 --chain mu --json bench/excamera-mu-results.json
	$(PY) bench/excamera.py --clip bigbuckbunny_320x180_48f.y4m --chunk 6 --batch 16 --workers 2 --json bench/excamera-bbb-results.json
	$(PY) bench/excamera.py --clip bus_cif_17f.y4m --chunk 6 --batch 16 --workers 2 --json bench/excamera-bus-results.json
	$(PY) bench/excamera.py --clip park_joy_160x90_10f.y4m --chunk 6 --batch 16 --workers 2 --json bench/excamera-parkjoy-results.json
	$(PY) bench/ratecontrol.py --workers 2 --json bench/ratecontrol-results.json
	$(PY) bench/lambda_pass0.py --runs 5 --json bench/lambda-pass0-results.json
	$(PY) bench/pass1_effort.py --json bench/pass1-effort-results.json --markdown bench/pass1-effort.md
	$(PY) bench/rebase.py --clips bbb720:72 bbb272:120 --runs 3 --json bench/rebase-results.json
	$(PY) bench/pipeline_speed.py --runs 3 --json bench/pipeline-speed-results.json
	$(PY) bench/hop.py --hops 6 --runs 3 --json bench/hop-results.json --markdown bench/hop.md
	$(PY) bench/launch.py --n 100,500,1000 --max-environments 200 --json bench/launch-results.json
	$(PY) bench/model.py --runs 3 --json bench/model-results.json
	$(PY) bench/scale.py --workers 1000,5000,10000 --json bench/scale-results.json
	$(PY) bench/stragglers.py --runs 3 --json bench/stragglers-results.json

# lambda-zip: the AWS Lambda deployment package (python3.12, x86_64). Its static vpxenc and the
# worker's dependencies are cached under ~/.cache/excamera, so only the first build is slow.
lambda-zip: setup
	$(VENV)/bin/excamera lambda build -o dist/excamera-lambda.zip

# wheel: dist/excamera-*.whl, abi3 (CPython 3.11+), manylinux_2_17 x86_64, by excamera.wheel
# (maturin with zig, and maturin's manylinux check); it replaces any excamera wheel in dist/.
wheel: setup
	$(PY) -m excamera.wheel -o dist

clean:
	rm -rf $(VENV) target $(DEMO_DIR) dist
