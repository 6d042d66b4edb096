"""Run plumbing shared by the commands: the entry shell and one-line errors (`entry`), the config composed,
checked and built (`compose`, `validate`, `limits`, `build`, `resolvers`), the run directory (`run_dir`),
checkpoints and what they say (`checkpoints`, `stored`, `provenance`)."""
