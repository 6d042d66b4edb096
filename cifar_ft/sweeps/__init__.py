"""Sweeps, in a room of their own: the Optuna sweeper (`hparams_search=optuna`: workers, storage,
heartbeats, pruning), re-run sweeps (`jobs`), sweep summaries and the study view, and reading runs
back (`compare`, `explore`). Above the run plumbing, below the commands."""
