"""model-registry: models, their training config and lifecycle, and deployment."""
