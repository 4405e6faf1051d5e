"""Pure functions of reinforcement learning: returns, advantages, masked statistics."""
