"""`pytest scenarios/`: a package, so its conftest imports as scenarios.conftest and the
checkout's own conftest stays the one `from conftest import ...` finds in tests/."""
