"""Helpers the tests share (not tests, not fixtures: those are in conftest.py)."""
