"""Create, invoke and delete the seed's `lambda_handler` on polyfn with boto3, unmodified.

    polyfn serve &                      # or `make run`
    python examples/compat/lambda-boto3/run.py

The server URL and admin key come from POLYFN_URL / POLYFN_API_KEY, else from the data dir
(POLYFN_DATA_DIR, default ~/.local/share/polyfn).
"""

import io
import json
import os
import zipfile
from pathlib import Path

import boto3

data_dir = Path(os.environ.get("POLYFN_DATA_DIR", "~/.local/share/polyfn")).expanduser()
url = os.environ.get("POLYFN_URL") or json.loads((data_dir / "server.json").read_text())["url"]
key = os.environ.get("POLYFN_API_KEY") or (data_dir / "admin.key").read_text().strip()

code = io.BytesIO()
with zipfile.ZipFile(code, "w") as zf:
    zf.write(Path(__file__).with_name("lambda_function.py"), "lambda_function.py")

lam = boto3.client("lambda", endpoint_url=url, region_name="us-east-1",
                   aws_access_key_id="polyfn-admin", aws_secret_access_key=key)
lam.create_function(FunctionName="boto3-reverse", Runtime="python3.12", Role="arn:aws:iam::123456789012:role/demo",
                    Handler="lambda_function.lambda_handler", Code={"ZipFile": code.getvalue()})
lam.get_waiter("function_active").wait(FunctionName="boto3-reverse")
r = lam.invoke(FunctionName="boto3-reverse", Payload=json.dumps({"message": "hello"}), LogType="Tail")
print(json.loads(r["Payload"].read()))  # {'message': 'olleh'}
lam.delete_function(FunctionName="boto3-reverse")
