"""Value baselines used to reduce the variance of policy-gradient estimates."""

from dmrl.baselines.linear import LinearFeatureBaseline

__all__ = ["LinearFeatureBaseline"]
