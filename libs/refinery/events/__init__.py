"""Event envelope and the catalogue of event types, one module per domain."""
