"""Run plumbing shared by the commands: the entry shell and one-line errors (`entry`), objects from
the config (`build`, `compose`), checkpoints (`checkpoints`), what a run writes (`artifacts`,
`figures`), sweep summaries (`summary`) and reading runs back for the notebook (`explore`)."""
