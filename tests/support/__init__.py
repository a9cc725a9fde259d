"""Helpers shared by the test suites (tests/ and e2e/)."""
