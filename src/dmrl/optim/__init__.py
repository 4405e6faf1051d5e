"""Outer-loop update rules and their numerical building blocks."""
