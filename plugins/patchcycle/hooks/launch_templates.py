"""EC2 launch templates: the versions a group's refresh starts from, a new version that changes only the AMI, and
making it the default."""

from __future__ import annotations

from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

# CreateLaunchTemplateVersion's VersionDescription and ClientToken limits.
MAX_DESCRIPTION = 255
MAX_CLIENT_TOKEN = 128
# DescribeLaunchTemplateVersions' largest page.
VERSIONS_PER_PAGE = 200


class LaunchTemplateHook(AwsBaseHook):
    """EC2 (client_type ec2) launch template versions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["client_type"] = "ec2"
        super().__init__(*args, **kwargs)

    def versions(self, template: str, min_version: str) -> list[dict[str, Any]]:
        """The versions of `template` (by name) from `min_version` on: a group's own version and every later one,
        among them the version a retried task made before. ImageIds come as stored: a Systems Manager parameter is
        `resolve:ssm:NAME`, not the AMI it resolves to."""
        pages = self.conn.get_paginator("describe_launch_template_versions").paginate(
            LaunchTemplateName=template, MinVersion=min_version, PaginationConfig={"PageSize": VERSIONS_PER_PAGE}
        )
        return [dict(version) for page in pages for version in page["LaunchTemplateVersions"]]

    def image_of(self, template_id: str, template_name: str, version: str) -> str:
        """The ImageId of one version of a template (by id, else name) as stored ("" when the version has none):
        `version` may be a number, $Latest or $Default, resolved by EC2."""
        named = {"LaunchTemplateId": template_id} if template_id else {"LaunchTemplateName": template_name}
        response = self.conn.describe_launch_template_versions(**named, Versions=[version])
        found = response["LaunchTemplateVersions"]
        return str((found[0].get("LaunchTemplateData") or {}).get("ImageId") or "") if found else ""

    def image_version(self, template: str, source_version: str, image_id: str, description: str, token: str) -> str:
        """A new version of `template` (by name) that is `source_version` with only its ImageId changed; returns
        its number. The version is pinned, never $Latest or $Default: a refresh onto a symbolic version cannot
        roll back. `token` (ClientToken) makes a retry return the version the first call created."""
        response = self.conn.create_launch_template_version(
            LaunchTemplateName=template,
            SourceVersion=source_version,
            VersionDescription=description[:MAX_DESCRIPTION],
            LaunchTemplateData={"ImageId": image_id},
            ClientToken=token[:MAX_CLIENT_TOKEN],
        )
        return str(response["LaunchTemplateVersion"]["VersionNumber"])

    def make_default(self, template: str, version: str) -> None:
        """The version later scale-outs launch from, for groups that launch the template's $Default."""
        self.conn.modify_launch_template(LaunchTemplateName=template, DefaultVersion=version)
