"""ARQ's own test suite, run against our worker: `make test-arq-compat` (see __main__)."""
