"""Pure active-learning method: uncertainty, strategies (the registry), selection, stopping,
metrics. Tensor functions only: no model, tokenizer or file I/O (an import contract)."""
