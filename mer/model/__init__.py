"""The model: the Llama-family presets and builder (`llama`) and loading a Hugging Face folder to continue
pre-training it (`pretrained`)."""
