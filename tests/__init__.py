"""pyraftlog's tests, a package: shared helpers are imported as tests.common, tests.model."""
