"""plan_baselines: the changes that make SSM hold what the files declare, within the ownership rules.

Ownership: the code manages only baselines tagged `patchcycle:managed=true` (it tags what it creates).
An unmanaged baseline is never changed, and a YAML baseline whose name an unmanaged one holds, or a patch
group an unmanaged baseline holds, fails the plan (OwnershipError) before anything changes.

The changes come in the order that applies them without leaving anything half-done: creates and updates
first, then patch-group moves (deregister from the old baseline, register to the new), then deletions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from patchcycle.core.baselines.diff import BaselineDiff, Change, changed_fields
from patchcycle.core.baselines.model import BaselineSpec, CurrentBaseline, OwnershipError, Registration
from patchcycle.core.baselines.vocabulary import MANAGED_TAG_KEY, MANAGED_TAG_VALUE


def plan_baselines(
    desired: Sequence[BaselineSpec],
    current: Sequence[CurrentBaseline],
    registrations: Sequence[Registration],
    *,
    prune: bool = False,
) -> BaselineDiff:
    """The changes that make SSM match the YAML; OwnershipError lists every refusal before anything changes."""
    existing, problems = _existing(desired, current)
    declared = {spec.name for spec in desired}
    orphans = sorted(b.name for b in current if b.managed and b.name not in declared)
    doomed = {b.baseline_id for b in current if b.managed and b.name not in declared} if prune else set()

    changes: list[Change] = []
    unchanged: list[str] = []
    for spec in desired:
        baseline = existing.get(spec.name)
        if baseline is None:
            changes.append(Change("create", spec.name, values=spec.create_request()))
            continue
        found = _baseline_changes(spec, baseline)
        changes += found
        if not found:
            unchanged.append(spec.name)

    groups = _group_changes(desired, existing, current, registrations, declared, doomed)
    problems += groups.problems
    if problems:
        raise OwnershipError(problems)

    deletions = [Change("delete", b.name, b.baseline_id) for b in current if b.baseline_id in doomed]
    return BaselineDiff(
        changes=(*changes, *groups.changes, *deletions),
        unchanged=tuple(name for name in unchanged if name not in groups.regrouped),
        orphans=tuple(name for name in orphans if not prune),
    )


def _existing(
    desired: Sequence[BaselineSpec], current: Sequence[CurrentBaseline]
) -> tuple[dict[str, CurrentBaseline], list[str]]:
    """YAML name -> the managed baseline that is it, and the refusals of the names SSM holds otherwise."""
    by_name: dict[str, list[CurrentBaseline]] = {}
    for held_baseline in current:
        by_name.setdefault(held_baseline.name, []).append(held_baseline)
    existing: dict[str, CurrentBaseline] = {}
    problems: list[str] = []
    for spec in desired:
        same_name = by_name.get(spec.name, [])
        problem = _name_problem(spec, same_name)
        if problem:
            problems.append(problem)
        elif same_name:
            existing[spec.name] = same_name[0]
    return existing, problems


def _name_problem(spec: BaselineSpec, same_name: Sequence[CurrentBaseline]) -> str | None:
    """Why the baselines of the account holding the spec's name cannot be the spec, if they cannot."""
    if len(same_name) > 1:
        ids = ", ".join(sorted(b.baseline_id for b in same_name))
        return f"{spec.name}: {len(same_name)} baselines have this name ({ids}); leave one"
    if same_name and not same_name[0].managed:
        return (
            f"{spec.name}: baseline {same_name[0].baseline_id} has this name but is not managed by patchcycle "
            f"(no {MANAGED_TAG_KEY}={MANAGED_TAG_VALUE} tag); rename the YAML baseline, or tag that baseline "
            "to hand it over"
        )
    if same_name and same_name[0].operating_system != spec.operating_system:
        return (
            f"{spec.name}: SSM cannot change a baseline's operating system "
            f"({same_name[0].operating_system} -> {spec.operating_system}); give the YAML baseline a new name"
        )
    return None


def _baseline_changes(spec: BaselineSpec, baseline: CurrentBaseline) -> list[Change]:
    """The update and the tag changes that make a managed baseline match its spec (none: it already does)."""
    changes: list[Change] = []
    new, old = changed_fields(spec, baseline.fields)
    if new:
        changes.append(Change("update", spec.name, baseline.baseline_id, values=new, previous=old))
    wanted_tags = spec.all_tags()
    to_set = {k: v for k, v in wanted_tags.items() if baseline.tags.get(k) != v}
    # aws: tags belong to AWS (CloudFormation and the like): never removed.
    to_unset = {k: v for k, v in baseline.tags.items() if k not in wanted_tags and not k.startswith("aws:")}
    if to_set:
        changes.append(Change("tag", spec.name, baseline.baseline_id, values=to_set))
    if to_unset:
        changes.append(Change("untag", spec.name, baseline.baseline_id, values=to_unset))
    return changes


@dataclass(frozen=True)
class _GroupPlan:
    changes: tuple[Change, ...]
    regrouped: frozenset[str]  # baselines whose patch groups change: not "unchanged"
    problems: tuple[str, ...]


def _group_changes(
    desired: Sequence[BaselineSpec],
    existing: dict[str, CurrentBaseline],
    current: Sequence[CurrentBaseline],
    registrations: Sequence[Registration],
    declared: set[str],
    doomed: set[str],
) -> _GroupPlan:
    """Patch groups: one baseline per (patch group, OS). Moves are deregister-then-register, group by group.

    `declared`: the names the files declare; `doomed`: the ids of the baselines prune deletes.
    """
    by_id = {b.baseline_id: b for b in current}
    held = {(r.patch_group, r.operating_system): r for r in registrations}
    wanted = {(group, spec.operating_system): spec.name for spec in desired for group in spec.patch_groups}
    changes: list[Change] = []
    regrouped: set[str] = set()
    problems: list[str] = []
    for key in sorted(set(held) | set(wanted)):
        group, _ = key
        registration = held.get(key)
        owner = by_id.get(registration.baseline_id) if registration else None
        target = wanted.get(key)
        target_id = existing[target].baseline_id if target in existing else ""
        if registration is not None and registration.baseline_id == target_id and target_id:
            continue  # already where the YAML wants it
        if registration is not None and target is None:
            # A managed baseline gives up a group its file dropped; a kept orphan keeps its groups.
            if owner is not None and owner.managed and (owner.name in declared or owner.baseline_id in doomed):
                changes.append(Change("deregister", owner.name, owner.baseline_id, group))
                regrouped.add(owner.name)
            continue  # an unmanaged baseline's group, or a kept orphan's: not ours to change
        if registration is not None:
            if owner is None or not owner.managed:
                problems.append(
                    f"{target}: patch group {group!r} is registered with {registration.baseline_name} "
                    f"({registration.baseline_id}), which patchcycle does not manage; deregister it by hand first"
                )
                continue
            changes.append(Change("deregister", owner.name, owner.baseline_id, group))
            regrouped.add(owner.name)
        assert target is not None
        changes.append(Change("register", target, target_id, group))
        regrouped.add(target)
    return _GroupPlan(tuple(changes), frozenset(regrouped), tuple(problems))
