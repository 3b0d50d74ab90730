"""Device simulators for development and tests (run as their own processes)."""
