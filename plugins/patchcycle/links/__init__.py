"""Operator extra links from the cycle's tasks to the AWS console, on the amazon provider's BaseAwsLink.

Each link is a small BaseAwsLink: a task persists the link's fields (region, partition, the resource's id) into
its XCom while it runs, and Airflow formats the URL from them when the UI asks. A console URL always opens in
the account the browser is signed in to: where the page can filter on an account (Security Hub), the link
carries the task's account; elsewhere, sign in to the account the task names in its log.
"""
