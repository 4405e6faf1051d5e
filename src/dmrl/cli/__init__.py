"""Thin command-line entry points: dmrl-train and dmrl-eval."""
