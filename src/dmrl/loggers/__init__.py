"""Where metrics go: metrics.jsonl (always), TensorBoard and a console progress bar."""

from dmrl.loggers.run_logger import RunLogger

__all__ = ["RunLogger"]
