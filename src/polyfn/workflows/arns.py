"""Amazon Resource Names of state machines and executions.

They appear inside executions (the context object's `$$.Execution.Id`, a nested `startExecution`'s
`StateMachineArn`), not only on the Step Functions face, so they are made here. polyfn has one account and one
region in its names (`REGION`, `ACCOUNT`); clients never check them.
"""

from __future__ import annotations

import re

REGION = "us-east-1"
ACCOUNT = "000000000000"  # the same account id the Lambda API shows

_MACHINE = re.compile(r"^arn:aws[a-zA-Z-]*:states:[a-z0-9-]*:\d*:stateMachine:(?P<name>[^:]+)(?::(?P<qualifier>[^:]+))?$")
_EXECUTION = re.compile(r"^arn:aws[a-zA-Z-]*:states:[a-z0-9-]*:\d*:(?:execution|express):(?P<machine>[^:]+):(?P<name>[^:]+)$")
#: state machine and execution names: 1-80 characters, no whitespace, brackets, wildcards or control characters
_NAME = re.compile(r"^[^\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]{1,80}$")


def machine_arn(name: str, region: str = REGION) -> str:
    return f"arn:aws:states:{region}:{ACCOUNT}:stateMachine:{name}"


def execution_arn(machine: str, name: str, region: str = REGION, express: bool = False) -> str:
    return f"arn:aws:states:{region}:{ACCOUNT}:{'express' if express else 'execution'}:{machine}:{name}"


def machine_name(arn: str) -> str | None:
    """The state machine an ARN names (a plain name is accepted too)."""
    m = _MACHINE.match(arn or "")
    if m:
        return m["name"]
    return arn if valid_name(arn) else None


def execution_name(arn: str) -> tuple[str, str] | None:
    """(state machine, execution name) of an execution ARN."""
    m = _EXECUTION.match(arn or "")
    return (m["machine"], m["name"]) if m else None


def valid_name(name: str) -> bool:
    return isinstance(name, str) and bool(_NAME.match(name))
