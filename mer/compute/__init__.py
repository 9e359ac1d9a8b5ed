"""Counting compute: optimizer steps per task from the token budget (`budget`), FLOPs per token (`flops`) and
model FLOP utilisation against a device's peak (`mfu`). Pure functions of the config and the model's shape."""
