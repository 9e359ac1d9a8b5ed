"""The run directory (docs/run_directory.md): its file names and metrics log (`layout`), the lock that gives it
one owner (`lock`), the status a run ends with (`status`), checkpoints and their integrity (`checkpoint`,
`checkpoint_integrity`, `integrity`, `metrics_prefix`, `resume_check`), starting over (`start_over`), what each
attempt ran (`provenance`) and a refused run's record (`refusal`). Imports only `mer.files`; never torch at import
time except in `checkpoint`/`checkpoint_integrity`, so the analysis and the sweep tools can read run directories."""
