//! Integration suites live in tests/.
