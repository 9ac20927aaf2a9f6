"""AWS Config calls for the patch compliance check: the recorder, the rule, its evaluation and results, paged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from botocore.exceptions import ClientError

# GetComplianceDetailsByConfigRule returns at most 100 results a page.
MAX_RESULTS_PER_PAGE = 100


class ConfigRulesHook(AwsBaseHook):
    """The config client's recorder, rule and compliance reads, and the two writes the stage needs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "config"
        super().__init__(*args, **kwargs)

    def configuration_recorders(self) -> list[dict[str, Any]]:
        """Every configuration recorder of the region (DescribeConfigurationRecorders)."""
        return list(self.conn.describe_configuration_recorders()["ConfigurationRecorders"])

    def recorder_statuses(self) -> list[dict[str, Any]]:
        """Whether each recorder is recording (DescribeConfigurationRecorderStatus)."""
        return list(self.conn.describe_configuration_recorder_status()["ConfigurationRecordersStatus"])

    def config_rules(self) -> list[dict[str, Any]]:
        """Every config rule of the region, all pages (DescribeConfigRules)."""
        pages = self.conn.get_paginator("describe_config_rules").paginate()
        return [rule for page in pages for rule in page["ConfigRules"]]

    def put_config_rule(self, rule: dict[str, Any]) -> None:
        """Create (or update) a rule (PutConfigRule); Config evaluates a new rule on its own."""
        self.conn.put_config_rule(ConfigRule=rule)

    def start_evaluation(self, rule_name: str) -> bool:
        """Ask Config to evaluate the rule now; False when it refuses because an evaluation is running or
        one was started less than a minute ago (LimitExceededException), so the caller can wait and retry."""
        try:
            self.conn.start_config_rules_evaluation(ConfigRuleNames=[rule_name])
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "LimitExceededException":
                return False
            raise
        return True

    def evaluation_status(self, rule_name: str) -> dict[str, Any]:
        """The rule's last invocation and evaluation times (DescribeConfigRuleEvaluationStatus)."""
        statuses = self.conn.describe_config_rule_evaluation_status(ConfigRuleNames=[rule_name])[
            "ConfigRulesEvaluationStatus"
        ]
        if not statuses:
            raise LookupError(f"config:DescribeConfigRuleEvaluationStatus knows no rule {rule_name}")
        return dict(statuses[0])

    def compliance_details(self, rule_name: str, compliance_types: Sequence[str]) -> list[dict[str, Any]]:
        """Every evaluation result of the rule in the given compliance types, all pages, 100 a page."""
        pages = self.conn.get_paginator("get_compliance_details_by_config_rule").paginate(
            ConfigRuleName=rule_name,
            ComplianceTypes=list(compliance_types),
            PaginationConfig={"PageSize": MAX_RESULTS_PER_PAGE},
        )
        return [result for page in pages for result in page["EvaluationResults"]]
