"""Configuration: the typed run config composed of every part's own config (`run_config`), strict keys with "did
you mean" (`strict`), differences between a relaunch and the recorded config (`diff`), one-line usage errors
(`usage_errors`) and the checks of the plan settings (`plan_settings`)."""
