"""Launching a run: assemble the config, data, run directory and trackers and call the trainer (`runner`)."""
