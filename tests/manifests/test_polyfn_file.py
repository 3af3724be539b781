"""polyfn's own definition file (`polyfn: 1`): parsed into a plan; every shipped scenario parses; mistakes
are errors naming their place."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyfn.cli.manifest import to_polyfn_trigger, trigger_id
from polyfn.manifests import ManifestError, load

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((REPO / "examples" / "scenarios").glob("*/scenario.yml"))


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "scenario.yml"
    p.write_text(text)
    (tmp_path / "main.py").write_text("def handle(event, context):\n    return event\n")
    return p


def test_the_seven_scenarios_parse() -> None:
    assert {p.parent.name for p in SCENARIOS} == {"thumbnail", "log-analysis", "scheduled-report", "iot-alert",
                                                  "video-transcode", "ai-prediction", "order-queue"}
    for path in SCENARIOS:
        plan = load(path)
        assert plan.format == "polyfn" and len(plan.functions) == 1
        fn = plan.functions[0]
        assert fn.code_dir == path.parent and fn.triggers and (path.parent / "README.md").is_file()
        assert (path.parent / fn.spec["handler"].rsplit(".", 1)[0]).with_suffix(".py").is_file()


def test_plan_of_a_full_file(tmp_path: Path) -> None:
    plan = load(write(tmp_path, """
polyfn: 1
buckets: [images]
tables:
  orders: {key: id, range: "ts:N"}
functions:
  shop:
    handler: main.handle
    flavor: aws
    memory: 512
    env: {A: 1, B: true}
    tables: [orders, "prices:read"]
    triggers:
      - {kind: amqp, id: shop-orders, queue: orders, prefetch: 5}
      - {kind: cron, schedule: "0 3 * * *"}
"""))
    assert plan.buckets == ["images"]
    assert plan.tables == [{"name": "orders", "key": {"name": "id", "type": "S"}, "range": {"name": "ts", "type": "N"}}]
    fn = plan.functions[0]
    assert fn.spec == {"name": "shop", "handler": "main.handle", "flavor": "aws", "memory": 512,
                       "env": {"A": "1", "B": "true"}}
    assert fn.grants == [("orders", "write"), ("prices", "read")]
    amqp, cron = fn.triggers
    assert to_polyfn_trigger(amqp) == ("amqp", {"queue": "orders", "prefetch": 5})
    assert trigger_id("shop", amqp) == "shop-orders"
    assert to_polyfn_trigger(cron) == ("cron", {"schedule": "0 3 * * *"})
    assert trigger_id("shop", cron).startswith("shop-cron-")  # stable: a redeploy replaces it


@pytest.mark.parametrize("body,message", [
    ("polyfn: 2\nfunctions: {a: {}}", "polyfn: 2 is not a version"),
    ("polyfn: 1\nfunctions: {a: {memroy: 5}}", "functions.a: unsupported key(s) memroy"),
    ("polyfn: 1\nfunctions: {a: {code: nowhere}}", "functions.a.code:"),
    ("polyfn: 1\nfunctions: {a: {triggers: [{queue: q}]}}", "functions.a.triggers[0]: a trigger is a mapping with `kind`"),
    ("polyfn: 1\nfunctions: {a: {tables: [\"t:admin\"]}}", "functions.a.tables[0]"),
    ("polyfn: 1\ntables: {t: {range: x}}\nfunctions: {a: {}}", "tables.t: needs `key`"),
    ("polyfn: 1\ntables: {t: {key: \"id:X\"}}\nfunctions: {a: {}}", "tables.t.key"),
    ("polyfn: 1\nfunctions: {Bad_Name: {}}", "functions.Bad_Name"),
    ("polyfn: 1\nbucket: [x]\nfunctions: {a: {}}", "unsupported key(s) bucket"),
])
def test_mistakes_name_their_place(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ManifestError) as e:
        load(write(tmp_path, body))
    assert message in str(e.value)
