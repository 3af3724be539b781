"""Order queue with a dead-letter queue: the seed's "message queue processing" scenario, kept in its shape.

AWS Lambda code for an SQS-style event; here the queue is RabbitMQ (an `amqp` trigger, shaped as SQS
`Records` for the `aws` flavor). Each order reserves stock with a conditional update (never below zero) and
is recorded as confirmed, or rejected when the stock is short. An order that cannot be processed at all
(not JSON, no `sku`) raises: polyfn retries it (`retry_attempts`) and then moves it to the dead-letter
queue (`polyfn dlq list`), where it can be inspected and replayed.
What was fixed so that it runs (docs/scenarios.md):
- only `event['Records'][0]` was read: a batch has several records, each is handled;
- the body is a JSON string, parsed; `check_stock` and `confirm_order` were never defined (DynamoDB through
  `boto3.client("dynamodb")`, polyfn's own DynamoDB API); the order id makes a redelivery harmless.
"""

import json

import boto3

db_client = boto3.client("dynamodb")


def check_stock(order):
    """Reserve the order's quantity; False when the stock is short (nothing reserved then)."""
    try:
        db_client.update_item(
            TableName="stock", Key={"sku": {"S": order["sku"]}}, UpdateExpression="SET qty = qty - :n",
            ConditionExpression="qty >= :n", ExpressionAttributeValues={":n": {"N": str(int(order["qty"]))}})
        return True
    except db_client.exceptions.ConditionalCheckFailedException:
        return False


def confirm_order(order, status):
    """Record the order once: a redelivered message finds it and changes nothing."""
    try:
        db_client.put_item(
            TableName="orders", ConditionExpression="attribute_not_exists(order_id)",
            Item={"order_id": {"S": order["order_id"]}, "sku": {"S": order["sku"]},
                  "qty": {"N": str(int(order["qty"]))}, "status": {"S": status}})
        return True
    except db_client.exceptions.ConditionalCheckFailedException:
        return False


def already_done(order):
    got = db_client.get_item(TableName="orders", Key={"order_id": {"S": order["order_id"]}})
    return "Item" in got


def handle(event, context):
    for record in event["Records"]:
        # 获取订单信息 (the order)
        try:
            order_info = json.loads(record["body"])
        except ValueError:
            order_info = None
        if not isinstance(order_info, dict) or not {"order_id", "sku", "qty"} <= order_info.keys():
            raise ValueError(f"not an order (needs order_id, sku, qty): {record['body'][:200]}")
        if already_done(order_info):
            continue
        # 对订单进行处理,如库存检查和订单确认 (check the stock, confirm the order)
        status = "confirmed" if check_stock(order_info) else "rejected"
        confirm_order(order_info, status)
        print(f"order {order_info['order_id']}: {status}")
    return {"orders": len(event["Records"])}
