"""The model and its passes: loading, LoRA, batching, scoring, generation, option likelihoods,
label-free answers, evaluation, training, the signals a strategy reads and their cache, and
data parallelism."""
