"""Photo notes: add a note (text + the photo's fileID) and list the caller's notes, newest first.

Runs for signed-in users of the app only (deployed with --auth app); who the caller is comes from the
verified token (`context.identity`), never from the request. Notes are JSON objects in the app's bucket
under notes/{openid}/ (the function's own storage key writes them); a note's thumbnail is ready once the
thumbnail function has written thumbs/… for its photo.
"""

import json
import os
import time

import boto3

s3 = boto3.client("s3")
BUCKET = os.environ.get("NOTES_BUCKET", "app-photo-notes")


def handler(event, context):
    if context.identity.cognito_identity_id is None:
        raise PermissionError("sign in first")
    me = context.identity.cognito_identity_id
    env = context.identity.cognito_identity_pool_id
    prefix = f"cloud://{env}.{BUCKET}/"
    if event.get("action") == "add":
        file_id, text = event.get("fileID", ""), str(event.get("text", ""))[:500]
        if not file_id.startswith(f"{prefix}photos/{me}/"):
            raise ValueError("fileID must be one of your own photos")
        created = time.time()
        note = {"text": text, "fileID": file_id, "created": created,
                "thumbID": prefix + "thumbs/" + file_id[len(prefix + "photos/"):]}
        s3.put_object(Bucket=BUCKET, Key=f"notes/{me}/{created:.6f}.json", Body=json.dumps(note).encode(),
                      ContentType="application/json")
        return note
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"notes/{me}/").get("Contents", [])
    notes = [json.loads(s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()) for o in listed]
    for note in notes:
        try:
            s3.head_object(Bucket=BUCKET, Key=note["thumbID"][len(prefix):])
            note["thumbReady"] = True
        except s3.exceptions.ClientError:
            note["thumbReady"] = False
    return sorted(notes, key=lambda n: n["created"], reverse=True)
