# The two commands a newcomer runs (see README.md). Both create or reuse .venv.
.PHONY: demo test lint

# Pipeline on the embedded synthetic data, then serve it and ask for items.
demo:
	bash scripts/bootstrap.sh
	.venv/bin/mtrec demo

# Static checks, then the whole test suite, slow end-to-end tests included.
test:
	bash scripts/bootstrap.sh
	bash scripts/install_test_tools.sh
	$(MAKE) --no-print-directory lint
	.venv/bin/python -m pytest tests -q

# Lint (ruff.toml), the import layers (.importlinter), the contracts' types.
lint:
	.venv/bin/ruff check .
	.venv/bin/lint-imports --no-cache
	.venv/bin/mypy contracts
