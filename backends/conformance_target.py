"""The module `pytest --sharedconv-conformance NAME` collects: the kit for backend NAME."""

import os

from sharedconv.backends.conformance import ENV, conformance_suite

if os.environ.get(ENV):
    TestConformance = conformance_suite(os.environ[ENV])
