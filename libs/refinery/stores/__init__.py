"""Storage ports and their backends: log store, event store, object store."""
