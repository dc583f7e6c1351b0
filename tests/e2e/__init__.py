"""End-to-end tests: the whole simulated station area around a terminal, over ptys and a real broker."""
