"""Files the DAGs use but Airflow never scans: templates, baselines, the sandbox AWS, the demo."""
