"""Helpers shared by the test suites (tests/ and e2e/): HTTP clients and forms, test
businesses, the payment steps, the two-business isolation world and browser steps.

Test modules import from here, never from each other (tests/test_suite.py checks)."""
