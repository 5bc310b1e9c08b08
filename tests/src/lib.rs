//! Fixtures live in tests/fixtures; the tests are in tests/tests.
