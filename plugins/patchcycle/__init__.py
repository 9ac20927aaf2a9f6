"""patchcycle: the AWS patch cycle as Airflow operators, hooks, triggers and pure pandas logic."""
