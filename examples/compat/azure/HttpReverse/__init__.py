import azure.functions as func


def main(req: func.HttpRequest) -> func.HttpResponse:
    text = req.params.get("text") or req.get_body().decode()
    return func.HttpResponse(text[::-1], status_code=200)
