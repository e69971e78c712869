"""Run sharedconv's conformance kit on this backend: `pytest examples/numba-backend/tests`."""

from sharedconv.backends.conformance import conformance_suite

TestNumbaConformance = conformance_suite("numba", random_examples=15)
