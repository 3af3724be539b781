import json


def handler(event, context):
    evt = json.loads(event)  # Function Compute passes the event as bytes
    return json.dumps({"message": evt.get("message", "")[::-1]})
