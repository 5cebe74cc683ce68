"""Machinery shared by every capability (no torch, no Lightning)."""
