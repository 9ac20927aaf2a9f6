"""What each operating system's patch baselines filter on, and the tag that marks a baseline as ours.

The shape of a baseline file (fields, limits, enums) is in include/baselines/baseline.schema.json; this
module holds what depends on the operating system, which that schema leaves to validation.
"""

from __future__ import annotations

from dataclasses import dataclass

# The DAG changes only baselines carrying this tag, and tags what it creates with it.
MANAGED_TAG_KEY = "patchcycle:managed"
MANAGED_TAG_VALUE = "true"
# A filter value that selects every value of its property.
WILDCARD = "*"


@dataclass(frozen=True)
class OsVocabulary:
    """The filter keys and values an operating system's baselines use (SSM's DescribePatchProperties).

    None for a key: the OS has no such property. An empty value set: any value (not checked here).
    """

    classification_key: str | None
    classifications: frozenset[str]
    severity_key: str | None
    severities: frozenset[str]
    approval_delay: bool = True  # ApproveAfterDays / ApproveUntilDate: not for Debian Server or Ubuntu Server
    linux: bool = True  # EnableNonSecurity and ApprovedPatchesEnableNonSecurity apply to Linux only


_AMAZON = OsVocabulary(
    "CLASSIFICATION",
    frozenset({"Security", "Bugfix", "Enhancement", "Recommended", "Newpackage"}),
    "SEVERITY",
    frozenset({"Critical", "Important", "Medium", "Low"}),
)
_RHEL = OsVocabulary(
    "CLASSIFICATION",
    frozenset({"Security", "Bugfix", "Enhancement", "Recommended", "Newpackage"}),
    "SEVERITY",
    frozenset({"Critical", "Important", "Moderate", "Low"}),
)
_DEBIAN = OsVocabulary(
    None, frozenset(), "PRIORITY", frozenset({"Required", "Important", "Standard", "Optional", "Extra"}), False
)
# Every operating system a baseline file may name (the schema's operating_system enum lists the same).
OS_VOCABULARY: dict[str, OsVocabulary] = {
    "WINDOWS": OsVocabulary(
        "CLASSIFICATION",
        frozenset(
            {
                "CriticalUpdates",
                "DefinitionUpdates",
                "Drivers",
                "FeaturePacks",
                "SecurityUpdates",
                "ServicePacks",
                "Tools",
                "UpdateRollups",
                "Updates",
                "Upgrades",
            }
        ),
        "MSRC_SEVERITY",
        frozenset({"Critical", "Important", "Moderate", "Low", "Unspecified"}),
        linux=False,
    ),
    "AMAZON_LINUX": _AMAZON,
    "AMAZON_LINUX_2": _AMAZON,
    "AMAZON_LINUX_2022": _AMAZON,
    "AMAZON_LINUX_2023": _AMAZON,
    "REDHAT_ENTERPRISE_LINUX": _RHEL,
    "CENTOS": _RHEL,
    "ORACLE_LINUX": _RHEL,
    "ROCKY_LINUX": _RHEL,
    "ALMA_LINUX": _RHEL,
    "SUSE": OsVocabulary(
        "CLASSIFICATION",
        frozenset({"Security", "Recommended", "Optional", "Feature", "Document", "Yast"}),
        "SEVERITY",
        frozenset({"Critical", "Important", "Moderate", "Low"}),
    ),
    "UBUNTU": _DEBIAN,
    "DEBIAN": _DEBIAN,
    "RASPBIAN": _DEBIAN,
    "MACOS": OsVocabulary("CLASSIFICATION", frozenset(), None, frozenset(), linux=False),
}
