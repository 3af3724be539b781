def reverse(event, context):
    return event['data'][::-1]
