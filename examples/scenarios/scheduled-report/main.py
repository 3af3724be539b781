"""Scheduled cleanup and report: the seed's "scheduled task" scenario, kept in its shape.

AWS Lambda code run by an EventBridge schedule. What was fixed so that it runs (docs/scenarios.md):
- `context['time']`: the context is an object without the time; the scheduled time is the event's `time`;
- `db_client.delete_items(KeyConditionExpression=...)` does not exist in DynamoDB: expired items are found
  with a Scan and `FilterExpression` (`expire_time` is not the key) and deleted one by one, each with a
  condition so an item renewed meanwhile is kept;
- `generate_report` was never defined, and there is no mail server: the daily-active-user report is
  written to the `reports` bucket as JSON (`email_client.send_email` becomes `s3_client.put_object`).
"""

import datetime as dt
import json

import boto3

db_client = boto3.client("dynamodb")
s3_client = boto3.client("s3")


def scan_all(**kwargs):
    while True:
        page = db_client.scan(**kwargs)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def generate_report(now):
    day_ago = str(int(now.timestamp()) - 86400)
    active = [i["user"]["S"] for i in scan_all(
        TableName="user_data", FilterExpression="last_seen >= :t", ExpressionAttributeValues={":t": {"N": day_ago}})]
    return {"date": now.date().isoformat(), "daily_active_users": len(active), "users": sorted(active)}


def handle(event, context):
    # 获取当前时间 (the scheduled time)
    now = dt.datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
    current_time = str(int(now.timestamp()))
    # 清理过期数据 (delete expired data)
    deleted = 0
    for item in scan_all(TableName="user_data", FilterExpression="expire_time < :current_time",
                         ExpressionAttributeValues={":current_time": {"N": current_time}}):
        try:
            db_client.delete_item(TableName="user_data", Key={"user": item["user"]},
                                  ConditionExpression="expire_time < :current_time",
                                  ExpressionAttributeValues={":current_time": {"N": current_time}})
            deleted += 1
        except db_client.exceptions.ConditionalCheckFailedException:
            pass  # renewed since the scan
    # 定时发送用户活跃度报告 (the daily active user report)
    report = {**generate_report(now), "expired_deleted": deleted}
    key = f"daily/{report['date']}.json"
    s3_client.put_object(Bucket="reports", Key=key, Body=json.dumps(report).encode(),
                         ContentType="application/json")
    print(f"deleted {deleted} expired item(s); report {key}: {report['daily_active_users']} active user(s)")
    return report
