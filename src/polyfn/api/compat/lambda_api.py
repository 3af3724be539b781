"""The AWS Lambda control and invoke API, as boto3 and the `aws lambda` CLI speak it (rest-json, SigV4).

`boto3.client("lambda", endpoint_url="http://127.0.0.1:8080", aws_access_key_id="polyfn-admin",
aws_secret_access_key=<admin key>, region_name=<any>)` creates, configures, lists, invokes and deletes
polyfn functions. Every request is SigV4-verified (`auth/sigv4.py`, service `lambda`) against the node's
key store, and the key's scope decides what it may do (`_ACTIONS`: read for Get/List, invoke for Invoke,
deploy for changes; a key bound to one function acts on that function only): else 403
`AccessDeniedException`. `polyfn keys create --scope S [--function F] --json` prints credentials for it.

Mapping:
* a Lambda function is a polyfn function; a Lambda name that is not a valid polyfn name (`My_Func`) is
  stored lower-cased with `-` (`my-func`) and the original kept in the annotation `aws.lambda/name`;
* `Runtime` chooses the polyfn runtime and the `aws` flavor (`manifests/runtimes.py`);
  `Role`, `Description`, `Tags` and the zip's SHA-256 are kept as `aws.lambda/*` annotations;
* every Create/UpdateFunctionCode/UpdateFunctionConfiguration is a new polyfn revision, live when the call
  returns, so `State` is always `Active` and `LastUpdateStatus` `Successful` (the waiters pass at once);
* a published version is a polyfn revision frozen under a version number, an alias names a version
  (`store/versions.py`); `Qualifier` (`$LATEST`, a version or an alias) picks the revision an invocation
  runs, served by its own pool when it is not the current one (`scheduler/registry.py`, `pinned`);
* every route polyfn does not implement answers `UnsupportedOperationException`.

Errors: the HTTP status, `x-amzn-ErrorType: <Type>` and `{"Type": "User", "Message": ...}`, the shape
botocore parses into `ClientError`. Every response carries `x-amzn-RequestId`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from polyfn.api.compat import lambda_durable
from polyfn.api.compat.lambda_face import LambdaFace
from polyfn.api.compat.lambda_functions import LambdaFunctions
from polyfn.api.compat.lambda_invoke import LambdaInvoke
from polyfn.api.compat.lambda_versions import LambdaVersions
from polyfn.api.compat.lambda_wire import LambdaError, error_response
from polyfn.api.routes import Route, mount

F = "/2015-03-31/functions"
#: the API versions boto3 and the aws CLI address; what polyfn does not implement answers UnsupportedOperation
OTHER_VERSIONS = ("2015-03-31", "2016-08-19", "2017-03-31", "2017-10-31", "2018-10-31", "2019-09-25", "2019-09-30",
                  "2020-04-22", "2020-06-30", "2021-10-31")
ANY = "GET,POST,PUT,DELETE,PATCH"

#: the Lambda API: method, path, handler (its class names the services it uses); the durable-execution routes
#: follow (lambda_durable.py), then every other path of the API's versions
ROUTES = (
    Route("POST",   F,                                          LambdaFunctions.create_function),
    Route("GET",    F,                                          LambdaFunctions.list_functions),
    Route("GET",    F + "/",                                    LambdaFunctions.list_functions),
    Route("GET",    F + "/{function_name}",                     LambdaFunctions.get_function),
    Route("DELETE", F + "/{function_name}",                     LambdaFunctions.delete_function),
    Route("GET",    F + "/{name}/code.zip",                     LambdaFunctions.download_code),
    Route("GET",    F + "/{function_name}/configuration",       LambdaFunctions.get_configuration),
    Route("PUT",    F + "/{function_name}/configuration",       LambdaFunctions.update_configuration),
    Route("PUT",    F + "/{function_name}/code",                LambdaFunctions.update_code),
    Route("POST",   F + "/{function_name}/invocations",         LambdaInvoke.invoke),
    Route("POST",   "/2021-11-15/functions/{function_name}/response-streaming-invocations", LambdaInvoke.invoke_stream),
    Route("POST",   F + "/{function_name}/versions",            LambdaVersions.publish_version),
    Route("GET",    F + "/{function_name}/versions",            LambdaVersions.list_versions),
    Route("POST",   F + "/{function_name}/aliases",             LambdaVersions.create_alias),
    Route("GET",    F + "/{function_name}/aliases",             LambdaVersions.list_aliases),
    Route("GET",    F + "/{function_name}/aliases/{alias_name}", LambdaVersions.get_alias),
    Route("PUT",    F + "/{function_name}/aliases/{alias_name}", LambdaVersions.update_alias),
    Route("DELETE", F + "/{function_name}/aliases/{alias_name}", LambdaVersions.delete_alias),
)
UNSUPPORTED = tuple(Route(ANY, f"/{v}/{{rest:path}}", LambdaFace.unsupported) for v in OTHER_VERSIONS)


def install(app: FastAPI, *, settings: Any, store: Any, deployer: Any, invoker: Any, recorder: Any, queue: Any,
            keys: Any, delete_function: Any, registry: Any, workflows: Any, admin_key: str) -> None:
    """Mount the Lambda API on `app` with the services the composition root hands in."""
    face = LambdaFace(store=store, keys=keys, deployer=deployer)
    functions = LambdaFunctions(face, settings=settings, store=store, registry=registry,
                                delete_function=delete_function, admin_key=admin_key)
    invoke = LambdaInvoke(face, settings=settings, store=store, invoker=invoker, queue=queue, recorder=recorder)
    r = APIRouter(include_in_schema=False)
    mount(r, ROUTES, face, functions, invoke, LambdaVersions(face, store=store))
    invoke.durable = lambda_durable.install(r, face.auth, workflows)
    app.add_middleware(lambda_durable.CheckpointFastPath, durable=lambda: invoke.durable)
    mount(r, UNSUPPORTED, face)
    app.include_router(r)

    @app.exception_handler(LambdaError)
    async def _lambda_error(_: Request, e: LambdaError) -> Response:
        return error_response(e)
