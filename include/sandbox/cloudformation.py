"""CloudFormation stack creation failures injected by the scenario (``cloudformation.fail_stacks``).

moto creates every stack at once (CREATE_COMPLETE) and has no notion of a
resource failing. For a stack the scenario says fails, the sandbox lets moto
create it as usual, then rolls it back the way AWS does when a resource cannot
be created, before the CreateStack response leaves the server:

* events: the resources' CREATE_IN_PROGRESS, CREATE_COMPLETE for those created
  before the failing one, CREATE_FAILED with the scenario's reason on the failing
  resource ("Resource creation cancelled" on those after it), the stack's
  ROLLBACK_IN_PROGRESS ("The following resource(s) failed to create: [X].
  Rollback requested by user."), each resource's DELETE_IN_PROGRESS and
  DELETE_COMPLETE, and the stack's ROLLBACK_COMPLETE;
* the stack is ROLLBACK_COMPLETE with that StackStatusReason, has no resources
  and no outputs, and its exports are withdrawn; its instances are terminated
  (moto's own resource deletion), so they drop out of SSM's managed instances;
* DeleteStack then succeeds (DELETE_COMPLETE), UpdateStack is refused (moto).

``OnFailure=DELETE`` deletes the stack after the rollback (DELETE_COMPLETE);
``OnFailure=DO_NOTHING`` / ``DisableRollback=true`` leave it CREATE_FAILED with
the other resources in place (moto then reports every resource of the stack
with the stack's status, CREATE_FAILED).

This reads and writes moto's CloudFormation internals (``Stack.events``,
``Stack.status``, ``ResourceMap._parsed_resources`` / ``_resource_json_map``):
moto is pinned exactly (requirements-dev.txt), and tests/sandbox/test_cloudformation.py
notices a change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from moto.cloudformation.models import Event, Stack, cloudformation_backends
from moto.cloudformation.parsing import OutputMap

from include.sandbox import rds_maintenance
from include.sandbox.api import RequestContext

if TYPE_CHECKING:
    from include.sandbox.scenario import StackFailure
    from include.sandbox.world import World

CANCELLED = "Resource creation cancelled"

# Called after moto has answered a request successfully: (world, request context, the request's form fields).
AfterMoto = Callable[["World", RequestContext, dict[str, str]], None]


def after_create_stack(world: World, ctx: RequestContext, form: dict[str, str]) -> None:
    """Fail the stack moto just created if the scenario says so."""
    name = form.get("StackName", "")
    failure = world.scenario.stack_failure(name, ctx.region)
    if failure is None:
        rds_maintenance.after_stack_created(world, ctx, name)  # DB instances restored from a snapshot: creating
        return
    backend = cloudformation_backends[ctx.account_id][ctx.region]
    stack = next((s for s in backend.stacks.values() if s.name == name), None)
    if stack is None or stack.status != "CREATE_COMPLETE":
        return
    on_failure = form.get("OnFailure", "ROLLBACK")
    if form.get("DisableRollback", "").lower() == "true":
        on_failure = "DO_NOTHING"
    fail_stack(stack, failure, rollback=on_failure != "DO_NOTHING")
    if on_failure == "DELETE":
        backend.delete_stack(stack.stack_id)


def fail_stack(stack: Stack, failure: StackFailure, rollback: bool = True) -> None:
    """Turn a stack moto created into one whose creation failed on one resource (rolled back unless told not to)."""
    resource_map = stack.resource_map
    template_resources: dict[str, Any] = dict(resource_map._resource_json_map)
    failing = _failing_resource(template_resources, failure)
    if failing is None:
        return
    # The resources CloudFormation started creating: what moto created, and the failing one (None: never created).
    created = [
        (logical_id, None if logical_id == failing else resource_map._parsed_resources[logical_id])
        for logical_id in template_resources
        if logical_id in resource_map._parsed_resources or logical_id == failing
    ]
    _withdraw(stack)  # before any deletion: computing the exports looks the resources up
    # moto ends creation with the stack's CREATE_COMPLETE event: that never happened.
    if stack.events and stack.events[-1].resource_status == "CREATE_COMPLETE":
        stack.events.pop()
    position = [logical_id for logical_id, _ in created].index(failing)
    for logical_id, resource in created:
        _event(stack, logical_id, resource, "CREATE_IN_PROGRESS")
    for index, (logical_id, resource) in enumerate(created):
        if logical_id == failing:
            _event(stack, logical_id, resource, "CREATE_FAILED", failure.reason)
        elif index < position:
            _event(stack, logical_id, resource, "CREATE_COMPLETE")
        else:
            _event(stack, logical_id, resource, "CREATE_FAILED", CANCELLED)
    failed_list = f"The following resource(s) failed to create: [{failing}]."
    if not rollback:
        # The failing resource was never created; the others stay until the stack is deleted.
        resource = resource_map._parsed_resources.pop(failing, None)
        if resource is not None:
            resource_map._delete_resource(resource, template_resources[failing])
        resource_map._resource_json_map = {k: v for k, v in template_resources.items() if k != failing}
        _set_status(stack, "CREATE_FAILED", failed_list)
        return
    reason = f"{failed_list} Rollback requested by user."
    _set_status(stack, "ROLLBACK_IN_PROGRESS", reason)
    for logical_id, resource in reversed(created):
        _event(stack, logical_id, resource, "DELETE_IN_PROGRESS")
    try:
        resource_map.delete()  # moto's own deletion: terminates the instances
    except Exception as exc:  # a resource moto cannot delete fails the rollback, as on AWS
        _set_status(stack, "ROLLBACK_FAILED", f"{reason} Rollback failed: {exc}")
        return
    for logical_id, resource in reversed(created):
        _event(stack, logical_id, resource, "DELETE_COMPLETE")
    resource_map._resource_json_map = {}
    stack.status = "ROLLBACK_COMPLETE"
    stack.stack_status_reason = reason  # type: ignore[attr-defined]  # moto serializes it as StackStatusReason
    stack._add_stack_event("ROLLBACK_COMPLETE")


def _set_status(stack: Stack, status: str, reason: str) -> None:
    """The stack's status, its StackStatusReason, and the stack event saying so."""
    stack.status = status
    stack.stack_status_reason = reason  # type: ignore[attr-defined]  # moto serializes it as StackStatusReason
    stack._add_stack_event(status, resource_status_reason=reason)


def _failing_resource(template_resources: dict[str, Any], failure: StackFailure) -> str | None:
    if failure.resource is not None:
        return failure.resource if failure.resource in template_resources else None
    for logical_id, spec in template_resources.items():
        if isinstance(spec, dict) and spec.get("Type") == "AWS::EC2::Instance":
            return logical_id
    return next(iter(template_resources), None)


def _withdraw(stack: Stack) -> None:
    """A stack whose creation failed has no outputs or exports.

    Emptying the outputs also matters to moto: its ResourceMap creates a resource whenever
    one is looked up and not parsed (any more), so an output referring to a deleted resource
    would launch it again (and one to a resource no longer in the map would fail).
    """
    backend = cloudformation_backends[stack.account_id][stack.region_name]
    for export in stack.exports:
        exported = backend.exports.get(export.name)
        if exported is not None and exported.exporting_stack_id == stack.stack_id:
            del backend.exports[export.name]
    stack.output_map = OutputMap(stack.resource_map, {}, stack.stack_id)


def _event(stack: Stack, logical_id: str, resource: Any, status: str, reason: str | None = None) -> None:
    """A resource's stack event; ``resource`` is moto's object, or None for the failing one (never created)."""
    spec = stack.template_dict.get("Resources", {}).get(logical_id, {})
    event = Event(
        stack_id=stack.stack_id,
        stack_name=stack.name,
        logical_resource_id=logical_id,
        physical_resource_id="" if resource is None else _physical_id(resource),
        resource_type=str(spec.get("Type", "")),
        resource_status=status,
        resource_status_reason=reason,
        resource_properties=None,
    )
    event.sendToSns(stack.account_id, stack.region_name, stack.notification_arns)
    stack.events.append(event)


def _physical_id(resource: Any) -> str:
    try:
        return str(resource.physical_resource_id or "")
    except Exception:  # some moto models compute it from state a deleted resource lacks
        return ""


def form_fields(body: bytes, query_string: str) -> dict[str, str]:
    """A query-protocol request's form fields (first value of each)."""
    fields: dict[str, str] = {}
    for text in (query_string, body.decode("utf-8", "replace")):
        for key, value in parse_qsl(text, keep_blank_values=True):
            fields.setdefault(key, value)
    return fields


AFTER_MOTO: dict[tuple[str, str], AfterMoto] = {("cloudformation", "CreateStack"): after_create_stack}
