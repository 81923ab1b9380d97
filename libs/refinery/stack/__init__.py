"""The embedded stack: SeaweedFS, Tansu and the services as supervised processes."""
