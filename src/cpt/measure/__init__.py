"""Numbers several boxes measure: batched forward passes, bits per byte, next-token KL."""
