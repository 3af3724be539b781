"""Amazon Resource Names of state machines and executions.

They appear inside executions (the context object's `$$.Execution.Id`, a nested `startExecution`'s
`StateMachineArn`), not only on the Step Functions face, so they are made here. polyfn has one region in its
names (`REGION`); the account is the machine's namespace's (`tenancy.account_id`: `default` is `ACCOUNT`,
000000000000, as before namespaces), so two namespaces' machines of one name have two ARNs, as two AWS accounts'
would. A machine is stored under its namespace (`default`, `team-a`) and its plain name.
"""

from __future__ import annotations

import re

from polyfn.tenancy import account_id

REGION = "us-east-1"
ACCOUNT = "000000000000"  # the same account id the Lambda API shows

_MACHINE = re.compile(r"^arn:aws[a-zA-Z-]*:states:[a-z0-9-]*:(?P<account>\d*):stateMachine:(?P<name>[^:]+)(?::(?P<qualifier>[^:]+))?$")
_EXECUTION = re.compile(r"^arn:aws[a-zA-Z-]*:states:[a-z0-9-]*:(?P<account>\d*):(?:execution|express):(?P<machine>[^:]+):(?P<name>[^:]+)$")
#: state machine and execution names: 1-80 characters, no whitespace, brackets, wildcards or control characters
_NAME = re.compile(r"^[^\s<>{}\[\]?*\"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]{1,80}$")


def machine_arn(name: str, region: str = REGION, namespace: str = "default") -> str:
    return f"arn:aws:states:{region}:{account_id(namespace)}:stateMachine:{name}"


def execution_arn(machine: str, name: str, region: str = REGION, express: bool = False,
                  namespace: str = "default") -> str:
    return f"arn:aws:states:{region}:{account_id(namespace)}:{'express' if express else 'execution'}:{machine}:{name}"


def account_of(arn: str) -> str | None:
    """The account id a state machine's or execution's ARN names (None: a plain name, or no account given)."""
    m = _MACHINE.match(arn or "") or _EXECUTION.match(arn or "")
    return (m["account"] or None) if m else None


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
