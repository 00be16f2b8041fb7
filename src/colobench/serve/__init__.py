"""Servers colobench ships: a fake OpenAI-compatible server for tests and self-checks."""
