"""dmrl: a command-line experiment runner for deep meta-reinforcement learning."""

__version__ = "0.1.0"
