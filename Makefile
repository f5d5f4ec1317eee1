# The two commands a newcomer runs (see README.md). Both create or reuse .venv.
.PHONY: demo test lint

# Pipeline on the embedded synthetic data, then serve it and ask for items.
# Installs the core only: the demo does not embed item text, so no torch.
demo:
	bash scripts/bootstrap.sh
	.venv/bin/mtrec demo

# Static checks, then the whole test suite, slow end-to-end tests included.
# Installs the `text` extra too; MTREC_REQUIRE_TEXT_EXTRA makes the tests
# that need it fail, not skip, should it be missing. Two worker processes
# (pytest-xdist; work stealing evens out the long end-to-end tests): much of
# the suite waits on subprocesses, servers and single-threaded Beam, so on
# two cores it took 19.0 min against 24.2 serially (15.6 min once ExampleGen
# encoded in batches), although each worker builds the session's shared
# small run once. --durations: the slowest tests, for whoever next has to
# make it faster.
test:
	bash scripts/bootstrap.sh test
	bash scripts/install_test_tools.sh
	$(MAKE) --no-print-directory lint
	MTREC_REQUIRE_TEXT_EXTRA=1 .venv/bin/python -m pytest tests -q -n 2 --dist worksteal \
	  --durations=15

# Lint (ruff.toml), the import layers (.importlinter), the contracts' types.
lint:
	.venv/bin/ruff check .
	.venv/bin/lint-imports --no-cache
	.venv/bin/mypy contracts
