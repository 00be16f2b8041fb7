"""Launchers: how instances become processes started together."""
