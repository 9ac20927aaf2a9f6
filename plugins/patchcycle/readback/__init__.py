"""Reading a run's artifacts back across its targets, for the tasks that work on the whole run.

match: the fleet as the match stage left it (plan_install, the report); install: what install mode did,
stage by stage (the report); evidence: Inspector's and Config's tables (the report). Every read goes
through patchcycle.run_artifacts.
"""
