"""Hugging Face out: a run's model as a `save_pretrained` folder (`export`) with its model card (`model_card`).
Loading a Hugging Face model in is `mer.model.pretrained`."""
