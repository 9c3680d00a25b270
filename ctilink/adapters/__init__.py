"""Switch adapters: one per switch kind, all offering the same call-control interface."""
