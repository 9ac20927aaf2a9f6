"""The patches the sandbox's Patch Manager knows: a fixed built-in catalog plus the scenario's own.

The built-in catalog is data, not random generation, so tests and scenario authors can name
patches. It covers 2026-06-01 .. 2026-11-20 (the default scenario's clock starts 2026-11-20) for
the five OS families, in the vocabulary Patch Manager uses for each:

- AMAZON_LINUX_2023: ``ALAS2023-2026-1012`` .. ``ALAS2023-2026-1140`` (21 advisories);
  AMAZON_LINUX_2: ``ALAS2-2026-2203`` .. ``ALAS2-2026-2301`` (17). Classification
  Security / Bugfix / Enhancement; severity Critical / Important / Medium / Low, and ``None``
  for non-security advisories (as Amazon Linux's updateinfo has no severity for them).
- REDHAT_ENTERPRISE_LINUX: ``RHSA-2026:3105`` .. ``RHSA-2026:4215`` plus ``RHBA-``/``RHEA-``
  advisories (17). Red Hat rates Critical / Important / Moderate / Low (Moderate, not Medium).
- UBUNTU (22.04): ``USN-7612-1`` .. ``USN-7855-1`` from the -security pocket (classification
  ``Security``) and package-version ids such as ``cloud-init_25.2-0ubuntu1~22.04.1`` from the
  -updates pocket (classification ``Updates``, which have no USN); severity is Ubuntu's priority
  Critical / High / Medium / Low (18). Patch Manager proper reports Debian sections and
  priorities for Ubuntu; the sandbox keeps pocket and USN priority, which DAG code can act on.
- WINDOWS (Server 2022): ``KB5066101`` (2026-06 cumulative update) .. ``KB5070506`` (2026-11),
  .NET updates, out-of-band and preview updates, ``KB890830`` (MSRT) and ``KB2267602`` (Defender
  definitions) (17). Classification SecurityUpdates / CriticalUpdates / Updates /
  DefinitionUpdates; MSRC severity Critical / Important / Moderate / Low on security updates and
  ``Unspecified`` on the rest, as Microsoft publishes them.

Kernel and cumulative updates need a reboot. Security patches carry CVE ids (``CVE-2026-NNNNN``);
one flaw appears on several families where it would in life: OpenSSL ``CVE-2026-21001``/``21002``
and ``CVE-2026-21040`` (Critical, released 2026-11-13/14), kernel ``CVE-2026-22101``/``22140``/
``22190``/``22230``, curl ``CVE-2026-23001`` (also fixed in Windows' July cumulative update),
glibc ``CVE-2026-24001``, OpenSSH ``CVE-2026-25001`` (Critical), sudo ``CVE-2026-26001``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import date

from include.sandbox.scenario import Patch, Scenario

OS_FAMILIES = ("AMAZON_LINUX_2023", "AMAZON_LINUX_2", "UBUNTU", "REDHAT_ENTERPRISE_LINUX", "WINDOWS")

# Patch Manager's PRODUCT value for the OS version the catalog was written for.
PRODUCTS: dict[str, str] = {
    "AMAZON_LINUX_2023": "AmazonLinux2023",
    "AMAZON_LINUX_2": "AmazonLinux2",
    "UBUNTU": "Ubuntu22.04",
    "REDHAT_ENTERPRISE_LINUX": "RedhatEnterpriseLinux9.4",
    "WINDOWS": "WindowsServer2022",
}
PRODUCT_FAMILIES: dict[str, str] = {
    "AMAZON_LINUX_2023": "AmazonLinux",
    "AMAZON_LINUX_2": "AmazonLinux",
    "UBUNTU": "Ubuntu",
    "REDHAT_ENTERPRISE_LINUX": "RedhatEnterpriseLinux",
    "WINDOWS": "Windows",
}
VENDORS: dict[str, str] = {
    "AMAZON_LINUX_2023": "Amazon Linux",
    "AMAZON_LINUX_2": "Amazon Linux",
    "UBUNTU": "Canonical",
    "REDHAT_ENTERPRISE_LINUX": "Red Hat",
    "WINDOWS": "Microsoft",
}

# Classifications that mean "fixes a vulnerability" (SecurityNonCompliantCount counts these).
SECURITY_CLASSIFICATIONS = frozenset({"Security", "SecurityUpdates"})

# (id, released, classification, severity, package, CVE ids separated by spaces, needs reboot)
_Row = tuple[str, str, str, str, str, str, bool]

_AMAZON_LINUX_2023: tuple[_Row, ...] = (
    ("ALAS2023-2026-1012", "2026-06-04", "Security", "Important", "kernel", "CVE-2026-22101 CVE-2026-22102", True),
    ("ALAS2023-2026-1018", "2026-06-11", "Security", "Medium", "curl", "CVE-2026-23001", False),
    ("ALAS2023-2026-1021", "2026-06-18", "Bugfix", "None", "amazon-ssm-agent", "", False),
    ("ALAS2023-2026-1035", "2026-07-02", "Security", "Important", "openssl", "CVE-2026-21001 CVE-2026-21002", False),
    ("ALAS2023-2026-1041", "2026-07-09", "Security", "Low", "vim", "CVE-2026-27011", False),
    ("ALAS2023-2026-1047", "2026-07-21", "Enhancement", "None", "python3.11", "", False),
    ("ALAS2023-2026-1056", "2026-08-06", "Security", "Critical", "openssh", "CVE-2026-25001", False),
    ("ALAS2023-2026-1062", "2026-08-13", "Security", "Important", "kernel", "CVE-2026-22140 CVE-2026-22141", True),
    ("ALAS2023-2026-1070", "2026-08-27", "Bugfix", "None", "systemd", "", False),
    ("ALAS2023-2026-1083", "2026-09-10", "Security", "Medium", "libxml2", "CVE-2026-28003", False),
    ("ALAS2023-2026-1089", "2026-09-17", "Security", "Important", "sudo", "CVE-2026-26001", False),
    ("ALAS2023-2026-1094", "2026-09-29", "Security", "Important", "glibc", "CVE-2026-24001", False),
    ("ALAS2023-2026-1101", "2026-10-08", "Security", "Important", "curl", "CVE-2026-23014 CVE-2026-23015", False),
    ("ALAS2023-2026-1108", "2026-10-15", "Security", "Critical", "kernel", "CVE-2026-22190", True),
    ("ALAS2023-2026-1112", "2026-10-22", "Bugfix", "None", "cloud-init", "", False),
    ("ALAS2023-2026-1119", "2026-10-29", "Security", "Medium", "python3.11", "CVE-2026-29002", False),
    ("ALAS2023-2026-1125", "2026-11-05", "Security", "Important", "bind", "CVE-2026-30402", False),
    ("ALAS2023-2026-1131", "2026-11-12", "Security", "Low", "git", "CVE-2026-27102", False),
    ("ALAS2023-2026-1134", "2026-11-13", "Security", "Critical", "openssl", "CVE-2026-21040", False),
    ("ALAS2023-2026-1138", "2026-11-17", "Security", "Important", "kernel", "CVE-2026-22230 CVE-2026-22231", True),
    ("ALAS2023-2026-1140", "2026-11-19", "Enhancement", "None", "ca-certificates", "", False),
)

_AMAZON_LINUX_2: tuple[_Row, ...] = (
    ("ALAS2-2026-2203", "2026-06-03", "Security", "Important", "kernel", "CVE-2026-22101", True),
    ("ALAS2-2026-2209", "2026-06-16", "Security", "Medium", "curl", "CVE-2026-23001", False),
    ("ALAS2-2026-2215", "2026-06-25", "Bugfix", "None", "amazon-ssm-agent", "", False),
    ("ALAS2-2026-2221", "2026-07-07", "Security", "Important", "openssl11", "CVE-2026-21001 CVE-2026-21002", False),
    ("ALAS2-2026-2230", "2026-07-23", "Security", "Medium", "httpd", "CVE-2026-28110", False),
    ("ALAS2-2026-2238", "2026-08-07", "Security", "Critical", "openssh", "CVE-2026-25001", False),
    ("ALAS2-2026-2244", "2026-08-18", "Security", "Important", "kernel", "CVE-2026-22140 CVE-2026-22142", True),
    ("ALAS2-2026-2251", "2026-09-01", "Bugfix", "None", "systemd", "", False),
    ("ALAS2-2026-2257", "2026-09-15", "Security", "Important", "sudo", "CVE-2026-26001", False),
    ("ALAS2-2026-2263", "2026-09-24", "Security", "Low", "vim", "CVE-2026-27011", False),
    ("ALAS2-2026-2270", "2026-10-06", "Security", "Important", "glibc", "CVE-2026-24001", False),
    ("ALAS2-2026-2276", "2026-10-16", "Security", "Critical", "kernel", "CVE-2026-22190", True),
    ("ALAS2-2026-2281", "2026-10-27", "Enhancement", "None", "aws-cfn-bootstrap", "", False),
    ("ALAS2-2026-2288", "2026-11-04", "Security", "Medium", "python3", "CVE-2026-29002", False),
    ("ALAS2-2026-2293", "2026-11-11", "Security", "Important", "nss", "CVE-2026-30511", False),
    ("ALAS2-2026-2297", "2026-11-14", "Security", "Critical", "openssl11", "CVE-2026-21040", False),
    ("ALAS2-2026-2301", "2026-11-18", "Bugfix", "None", "tzdata", "", False),
)

_REDHAT_ENTERPRISE_LINUX: tuple[_Row, ...] = (
    ("RHSA-2026:3105", "2026-06-05", "Security", "Important", "kernel", "CVE-2026-22101 CVE-2026-22102", True),
    ("RHSA-2026:3170", "2026-06-12", "Security", "Moderate", "curl", "CVE-2026-23001", False),
    ("RHBA-2026:3301", "2026-06-23", "Bugfix", "None", "NetworkManager", "", False),
    ("RHSA-2026:3388", "2026-07-08", "Security", "Important", "openssl", "CVE-2026-21001 CVE-2026-21002", False),
    ("RHSA-2026:3452", "2026-07-22", "Security", "Low", "vim", "CVE-2026-27011", False),
    ("RHSA-2026:3561", "2026-08-06", "Security", "Critical", "openssh", "CVE-2026-25001", False),
    ("RHSA-2026:3610", "2026-08-19", "Security", "Important", "kernel", "CVE-2026-22140 CVE-2026-22141", True),
    ("RHEA-2026:3702", "2026-09-02", "Enhancement", "None", "python3.12", "", False),
    ("RHSA-2026:3777", "2026-09-16", "Security", "Important", "sudo", "CVE-2026-26001", False),
    ("RHSA-2026:3840", "2026-09-30", "Security", "Moderate", "libxml2", "CVE-2026-28003", False),
    ("RHSA-2026:3915", "2026-10-07", "Security", "Important", "glibc", "CVE-2026-24001", False),
    ("RHSA-2026:3988", "2026-10-14", "Security", "Critical", "kernel", "CVE-2026-22190", True),
    ("RHBA-2026:4021", "2026-10-21", "Bugfix", "None", "systemd", "", False),
    ("RHSA-2026:4102", "2026-11-04", "Security", "Moderate", "python3.12", "CVE-2026-29002", False),
    ("RHSA-2026:4166", "2026-11-11", "Security", "Important", "bind", "CVE-2026-30402", False),
    ("RHSA-2026:4190", "2026-11-13", "Security", "Critical", "openssl", "CVE-2026-21040", False),
    ("RHSA-2026:4215", "2026-11-18", "Security", "Important", "kernel", "CVE-2026-22230", True),
)

_UBUNTU: tuple[_Row, ...] = (
    ("USN-7612-1", "2026-06-04", "Security", "High", "linux", "CVE-2026-22101 CVE-2026-22102", True),
    ("USN-7620-1", "2026-06-11", "Security", "Medium", "curl", "CVE-2026-23001", False),
    ("cloud-init_25.2-0ubuntu1~22.04.1", "2026-06-24", "Updates", "Low", "cloud-init", "", False),
    ("USN-7658-1", "2026-07-07", "Security", "High", "openssl", "CVE-2026-21001 CVE-2026-21002", False),
    ("USN-7671-1", "2026-07-16", "Security", "Low", "vim", "CVE-2026-27011", False),
    ("USN-7690-1", "2026-08-06", "Security", "Critical", "openssh", "CVE-2026-25001", False),
    ("USN-7702-1", "2026-08-12", "Security", "High", "linux", "CVE-2026-22140 CVE-2026-22141 CVE-2026-22142", True),
    ("systemd_249.11-0ubuntu3.17", "2026-08-26", "Updates", "Medium", "systemd", "", False),
    ("USN-7731-1", "2026-09-09", "Security", "Medium", "libxml2", "CVE-2026-28003", False),
    ("USN-7744-1", "2026-09-17", "Security", "High", "sudo", "CVE-2026-26001", False),
    ("USN-7760-1", "2026-09-30", "Security", "Medium", "glibc", "CVE-2026-24001", False),
    ("USN-7781-1", "2026-10-09", "Security", "Medium", "curl", "CVE-2026-23014 CVE-2026-23015", False),
    ("USN-7795-1", "2026-10-15", "Security", "Critical", "linux", "CVE-2026-22190", True),
    ("snapd_2.68.5+22.04", "2026-10-22", "Updates", "Low", "snapd", "", False),
    ("USN-7812-1", "2026-10-30", "Security", "Medium", "python3.10", "CVE-2026-29002", False),
    ("USN-7830-1", "2026-11-06", "Security", "High", "bind9", "CVE-2026-30402", False),
    ("USN-7848-1", "2026-11-13", "Security", "Critical", "openssl", "CVE-2026-21040", False),
    ("USN-7855-1", "2026-11-18", "Security", "High", "linux", "CVE-2026-22230 CVE-2026-22231", True),
)

# Windows titles follow Microsoft's Update Catalog; {ym} is the release month, {kb} the id.
_SERVER = "Microsoft server operating system version 21H2"
_LCU = "{ym} Cumulative Update for " + _SERVER + " for x64-based Systems ({kb})"
_NET = "{ym} Cumulative Update for .NET Framework 3.5, 4.8 and 4.8.1 for " + _SERVER + " for x64 ({kb})"
_OOB = "{ym} Out-of-band Update for " + _SERVER + " for x64-based Systems ({kb})"
_PREVIEW = "{ym} Cumulative Update Preview for " + _SERVER + " for x64-based Systems ({kb})"
_DBX = "{ym} Security Update for Secure Boot DBX for " + _SERVER + " ({kb})"
_MSRT = "Windows Malicious Software Removal Tool x64 - v5.143 ({kb})"
_DEFENDER = "Security Intelligence Update for Microsoft Defender Antivirus - {kb} (Version 1.443.118.0)"

_SEC, _CRIT = "SecurityUpdates", "CriticalUpdates"

# (id, released, classification, MSRC severity, title template, CVE ids, needs reboot)
_WINDOWS: tuple[_Row, ...] = (
    ("KB5066101", "2026-06-09", _SEC, "Critical", _LCU, "CVE-2026-31001 CVE-2026-31002 CVE-2026-31003", True),
    ("KB5066160", "2026-06-09", _SEC, "Important", _NET, "CVE-2026-31010", False),
    ("KB5067012", "2026-06-26", _CRIT, "Unspecified", _OOB, "", True),
    ("KB5067302", "2026-07-14", _SEC, "Critical", _LCU, "CVE-2026-31101 CVE-2026-31102 CVE-2026-23001", True),
    ("KB5067362", "2026-07-14", _SEC, "Important", _NET, "CVE-2026-31110", False),
    (
        "KB5068103",
        "2026-08-11",
        _SEC,
        "Critical",
        _LCU,
        "CVE-2026-31201 CVE-2026-31202 CVE-2026-31203 CVE-2026-31204",
        True,
    ),
    ("KB5068170", "2026-08-11", _SEC, "Moderate", _DBX, "CVE-2026-31220", True),
    ("KB5068904", "2026-09-08", _SEC, "Critical", _LCU, "CVE-2026-31301 CVE-2026-31302", True),
    ("KB5068961", "2026-09-08", _SEC, "Important", _NET, "CVE-2026-31310", False),
    ("KB5069255", "2026-09-23", "Updates", "Unspecified", _PREVIEW, "", True),
    ("KB5069705", "2026-10-13", _SEC, "Critical", _LCU, "CVE-2026-31401 CVE-2026-31402 CVE-2026-31403", True),
    ("KB5069766", "2026-10-13", _SEC, "Low", _NET, "CVE-2026-31410", False),
    ("KB5070080", "2026-10-28", _CRIT, "Unspecified", _OOB, "", True),
    ("KB5070506", "2026-11-10", _SEC, "Critical", _LCU, "CVE-2026-31501 CVE-2026-31502 CVE-2026-23015", True),
    ("KB5070567", "2026-11-10", _SEC, "Important", _NET, "CVE-2026-31510", False),
    ("KB890830", "2026-11-10", "Updates", "Unspecified", _MSRT, "", False),
    ("KB2267602", "2026-11-18", "DefinitionUpdates", "Unspecified", _DEFENDER, "", False),
)


def _linux_title(os: str, classification: str, severity: str, package: str, cve_count: int) -> str:
    if os == "UBUNTU":
        if classification != "Security":
            return f"{package} stable release update"
        name = "Linux kernel" if package == "linux" else package
        return f"{name} {'vulnerability' if cve_count == 1 else 'vulnerabilities'}"
    if classification in SECURITY_CLASSIFICATIONS:
        return f"{severity}: {package} security update"
    return f"{package} {'bug fix' if classification == 'Bugfix' else 'enhancement'} update"


def _patch(os: str, row: _Row) -> tuple[Patch, str | None]:
    """A catalog row as a Patch, with its package name (None for Windows)."""
    patch_id, released, classification, severity, text, cve_text, reboot = row
    day = date.fromisoformat(released)
    cves = tuple(cve_text.split())
    if os == "WINDOWS":
        title, package = text.format(ym=day.strftime("%Y-%m"), kb=patch_id), None
    else:
        title, package = _linux_title(os, classification, severity, text, len(cves)), text
    return Patch(patch_id, os, title, classification, severity, day, cves, reboot), package


def _builtin() -> tuple[tuple[Patch, ...], dict[str, str]]:
    tables = {
        "AMAZON_LINUX_2023": _AMAZON_LINUX_2023,
        "AMAZON_LINUX_2": _AMAZON_LINUX_2,
        "UBUNTU": _UBUNTU,
        "REDHAT_ENTERPRISE_LINUX": _REDHAT_ENTERPRISE_LINUX,
        "WINDOWS": _WINDOWS,
    }
    patches: list[Patch] = []
    packages: dict[str, str] = {}
    for os, rows in tables.items():
        for row in rows:
            patch, package = _patch(os, row)
            patches.append(patch)
            if package is not None:
                packages[patch.id] = package
    return tuple(patches), packages


BUILTIN_PATCHES, BUILTIN_PACKAGES = _builtin()


class Catalog:
    """Every patch the sandbox's Patch Manager knows, by id and by OS family (oldest first)."""

    def __init__(self, patches: Iterable[Patch], packages: Mapping[str, str] | None = None) -> None:
        by_id: dict[str, Patch] = {}
        for patch in patches:
            by_id[patch.id] = patch  # a later patch with the same id replaces the earlier one
        ordered = sorted(by_id.values(), key=lambda p: (p.released, p.id))
        self._by_id = {patch.id: patch for patch in ordered}
        self._by_os: dict[str, list[Patch]] = {}
        for patch in ordered:
            self._by_os.setdefault(patch.os, []).append(patch)
        self._packages = {pid: name for pid, name in (packages or {}).items() if pid in self._by_id}

    def for_os(self, os: str) -> list[Patch]:
        """The patches of one OS family, sorted by release date (then id)."""
        return list(self._by_os.get(os, ()))

    def get(self, patch_id: str) -> Patch | None:
        return self._by_id.get(patch_id)

    def all(self) -> list[Patch]:
        """Every patch, sorted by release date (then id)."""
        return list(self._by_id.values())

    def package(self, patch_id: str) -> str | None:
        """The package a Linux patch updates, when the catalog knows it (scenario patches do not say)."""
        return self._packages.get(patch_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, patch_id: object) -> bool:
        return patch_id in self._by_id


def build_catalog(scenario: Scenario) -> Catalog:
    """The built-in catalog (unless the scenario turns it off) plus the scenario's patches, which win on id."""
    builtin = BUILTIN_PATCHES if scenario.builtin_catalog else ()
    extra_ids = {patch.id for patch in scenario.extra_patches}
    # A replaced built-in patch must not keep its package name: the replacement may be another package.
    packages = {pid: name for pid, name in BUILTIN_PACKAGES.items() if pid not in extra_ids}
    return Catalog((*builtin, *scenario.extra_patches), packages if scenario.builtin_catalog else {})


def is_security(patch: Patch) -> bool:
    return patch.classification in SECURITY_CLASSIFICATIONS


def content_url(patch: Patch) -> str:
    """Where the vendor publishes the patch (the Patch's ContentUrl)."""
    if patch.os == "WINDOWS":
        return f"https://support.microsoft.com/help/{patch.id.removeprefix('KB')}"
    if patch.os == "AMAZON_LINUX_2023":
        return f"https://alas.aws.amazon.com/AL2023/{patch.id}.html"
    if patch.os == "AMAZON_LINUX_2":
        return f"https://alas.aws.amazon.com/AL2/{patch.id}.html"
    if patch.os == "REDHAT_ENTERPRISE_LINUX":
        return f"https://access.redhat.com/errata/{patch.id}"
    if patch.id.startswith("USN-"):
        return f"https://ubuntu.com/security/notices/{patch.id}"
    return f"https://launchpad.net/ubuntu/+source/{patch.id.split('_', 1)[0]}"


def windows_update_id(patch: Patch) -> str:
    """The Windows Update GUID Patch Manager reports as a Windows patch's Id (not the KB number); stable per KB."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://catalog.update.microsoft.com/{patch.id}"))
