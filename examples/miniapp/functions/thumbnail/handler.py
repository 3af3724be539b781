"""The seed's first scenario: a user uploads a photo in the mini-program, a function makes the thumbnail.

A storage trigger on the app's bucket (prefix photos/) runs this with an S3 event; the thumbnail (at most
200×200, JPEG) goes to thumbs/… with the photo owner's stamp, so the app's file rules treat it as theirs.
"""

import io

import boto3
from PIL import Image

s3 = boto3.client("s3")


def handler(event, context):
    done = []
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = record["s3"]["object"]["key"]
        original = s3.get_object(Bucket=bucket, Key=key)
        with Image.open(io.BytesIO(original["Body"].read())) as img:
            img.thumbnail((200, 200))
            out = io.BytesIO()
            img.convert("RGB").save(out, "JPEG", quality=80)
        thumb = "thumbs/" + key[len("photos/"):]
        s3.put_object(Bucket=bucket, Key=thumb, Body=out.getvalue(), ContentType="image/jpeg",
                      Metadata={"openid": original["Metadata"].get("openid", "")})
        done.append(thumb)
    return {"thumbnails": done}
