"""Routing, dedupe, the bounded queue and the workers that read it."""
