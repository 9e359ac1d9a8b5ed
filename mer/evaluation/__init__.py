"""Scoring a model: the fixed held-out windows (`windows`), gradient alignment between tasks
(`grad_alignment`), the forgetting metrics from a loss matrix (`metrics`, torch-free: the analysis uses it), and
downstream tasks through lm-evaluation-harness (`harness`, `downstream`)."""
