"""How the weights move: AdamW with the cosine schedule over all tasks (`schedule`) and the Reptile interpolation
every `k` optimizer steps (`reptile`)."""
