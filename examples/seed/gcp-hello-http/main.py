def hello_http(request):
    return 'Hello World!'
