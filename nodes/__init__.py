"""Node functions, prompts and the model factory."""
