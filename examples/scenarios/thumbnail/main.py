"""Make a thumbnail of every image uploaded under uploads/ and write it under thumbs/.

The seed's scenario (a mini-program uploads a photo, a function makes its thumbnail), adapted to run:
the seed's sample reads the file from /tmp and calls `s3_client.upload_file` on an `s3_client` it never
defines. Here the client is created the way AWS code does it — `boto3.client("s3")` with no arguments —
and polyfn gives every instance `AWS_ENDPOINT_URL_S3` and its own credentials, so this reaches polyfn's
object store unedited (and real S3 when deployed to AWS Lambda with an S3 trigger).

The event is polyfn's native CloudEvent (`event["data"]["bucket"]`, `["key"]`); the vendor event shapes
(S3 `Records`, OSS `events` …) come from the flavor of the function.
"""

import io
import os
import posixpath

import boto3
from PIL import Image

SIZE = (128, 128)
s3_client = boto3.client("s3")


def handler(event, context):
    data = event["data"]
    bucket, key = data["bucket"], data["key"]
    body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    with Image.open(io.BytesIO(body)) as image:
        image.thumbnail(SIZE)
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG")
    name = posixpath.basename(key)
    thumb_key = f"thumbs/{os.path.splitext(name)[0]}-thumb.jpg"
    s3_client.put_object(Bucket=bucket, Key=thumb_key, Body=out.getvalue(), ContentType="image/jpeg")
    print(f"thumbnail of s3://{bucket}/{key} → s3://{bucket}/{thumb_key}")
    return {"bucket": bucket, "thumbnail": thumb_key}
