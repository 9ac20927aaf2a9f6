"""Notifications through Airflow notifiers (the amazon provider's SnsNotifier)."""
