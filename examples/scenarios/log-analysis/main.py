"""Log analysis: the seed's "logs and real-time analysis" scenario, kept in its shape.

The seed's handler is AWS Lambda code for a CloudWatch Logs subscription (`event['awslogs']['data']`). What
was fixed so that it runs (docs/scenarios.md):
- `awslogs.data` is base64 of gzipped JSON, not a list: it is decoded, and the lines are its `logEvents`;
- the loop read `log_logs` (a typo for `log_events`), and `analyze` was never defined: here it parses one
  JSON line `{"user", "action"}` (other lines are counted as `unparsed`);
- `db_client` was never defined, and `put_item` needs DynamoDB-typed attributes: `boto3.client("dynamodb")`
  (polyfn's own DynamoDB API; no arguments) adds the counts per user with one `UpdateItem ... ADD` each,
  so concurrent batches never lose a count.
"""

import base64
import gzip
import json
from collections import Counter

import boto3

db_client = boto3.client("dynamodb")


def analyze(log_event):
    """(user, action) of one log line, or ("-", "unparsed")."""
    try:
        line = json.loads(log_event["message"])
        return str(line["user"]), str(line["action"])
    except (ValueError, KeyError, TypeError):
        return "-", "unparsed"


def handle(event, context):
    # 获取日志事件 (the log events)
    log_events = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))["logEvents"]
    # 对日志事件进行解析和处理 (analyse each line)
    counts = Counter(analyze(log_event) for log_event in log_events)
    # 将分析结果保存到数据库 (save the result)
    for (user, action), n in counts.items():
        db_client.update_item(
            TableName="analysis_result", Key={"user": {"S": user}},
            UpdateExpression="ADD #action :n, events :n",
            ExpressionAttributeNames={"#action": action}, ExpressionAttributeValues={":n": {"N": str(n)}})
    print(f"analysed {len(log_events)} line(s): {dict((f'{u}/{a}', n) for (u, a), n in counts.items())}")
    return {"lines": len(log_events), "users": len({u for u, _ in counts})}
