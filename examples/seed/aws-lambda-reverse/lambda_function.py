def lambda_handler(event, context):
    message = event['message'][::-1]
    return {
        'message' : message
    }
