"""Slow, literal pure-Python reference implementations used by the property tests."""
