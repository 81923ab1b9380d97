"""Refinery: shared libraries of every service."""
