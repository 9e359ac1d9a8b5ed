"""Stopping on a signal: a stop asked of a whole sweep (`stop_request`) and the signals that arrive while a run
starts (`startup_signals`)."""
