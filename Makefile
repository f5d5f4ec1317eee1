# The two commands a newcomer runs (see README.md). Both create or reuse .venv.
.PHONY: demo test

# Pipeline on the embedded synthetic data, then serve it and ask for items.
demo:
	bash scripts/bootstrap.sh
	.venv/bin/mtrec demo

# The whole test suite, slow end-to-end tests included.
test:
	bash scripts/bootstrap.sh
	bash scripts/install_test_tools.sh
	.venv/bin/python -m pytest tests -q
