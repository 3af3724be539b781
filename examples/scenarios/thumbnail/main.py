"""Thumbnail on upload: the seed's "real-time file processing" scenario, kept in its shape.

The seed's handler is Alibaba Cloud Function Compute code (`def handle(event, context)` reading
`event['oss']['bucket']['name']`). What was fixed so that it runs (docs/scenarios.md):
- FC passes the event as bytes holding `{"events": [...]}`: the record is `json.loads(event)['events'][0]`;
- the seed opens `/tmp/<key>` without ever downloading it: the object is read from the bucket first;
- `s3_client` was never defined: `boto3.client("s3")` with no arguments (polyfn gives every instance
  `AWS_ENDPOINT_URL_S3` and its own credentials);
- the seed wrote the thumbnail over the original key, which would trigger the function again on its own
  output: it goes to `thumbs/` (polyfn refuses such a loop anyway), as a JPEG.
The image is handled in memory (no /tmp file), so names with `/` in them work too.
"""

import io
import json
import posixpath

import boto3
from PIL import Image

s3_client = boto3.client("s3")


def handle(event, context):
    # 获取上传的文件信息 (the uploaded file)
    record = json.loads(event)["events"][0]
    bucket_name = record["oss"]["bucket"]["name"]
    object_key = record["oss"]["object"]["key"]
    body = s3_client.get_object(Bucket=bucket_name, Key=object_key)["Body"].read()
    # 打开图片并进行处理 (open and process the image)
    with Image.open(io.BytesIO(body)) as img:
        img.thumbnail((800, 800))
        out = io.BytesIO()
        img.convert("RGB").save(out, "JPEG")
    # 将处理后的图片上传到云存储 (store the result)
    stem = posixpath.splitext(posixpath.basename(object_key))[0]
    thumb_key = f"thumbs/{stem}-thumb.jpg"
    s3_client.put_object(Bucket=bucket_name, Key=thumb_key, Body=out.getvalue(), ContentType="image/jpeg")
    print(f"thumbnail of oss://{bucket_name}/{object_key} -> {thumb_key} {img.size}")
    return {"bucket": bucket_name, "thumbnail": thumb_key}
