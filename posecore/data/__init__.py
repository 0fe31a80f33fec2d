"""Training data: the target-encoding cache and the batch sources built on it."""
