"""The seed's first scenario: a user uploads a photo in the mini-program, a function makes the thumbnail.

A storage trigger on the app's bucket (prefix photos/) runs this with an S3 event. The photo is
photos/{note id}.{ext}; the thumbnail (at most 200×200, JPEG) goes to thumbs/{note id}.jpg with the photo
owner's stamp, so the app's file rules treat it as theirs, and the note gets its `thumbID`: the page,
watching its notes, shows the thumbnail the moment it is set. The note is updated only if the photo's owner
(the stamp the upload policy pinned) wrote it: nobody can attach a picture to someone else's note.
"""

import io
import posixpath

import boto3
from PIL import Image

s3 = boto3.client("s3")
notes = boto3.client("dynamodb")  # the notes collection (polyfn db grant thumbnail notes)


def handler(event, context):
    done = []
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = record["s3"]["object"]["key"]
        original = s3.get_object(Bucket=bucket, Key=key)
        owner = original["Metadata"].get("openid", "")
        with Image.open(io.BytesIO(original["Body"].read())) as img:
            img.thumbnail((200, 200))
            out = io.BytesIO()
            img.convert("RGB").save(out, "JPEG", quality=80)
        note_id = posixpath.splitext(posixpath.basename(key))[0]
        thumb = f"thumbs/{note_id}.jpg"
        s3.put_object(Bucket=bucket, Key=thumb, Body=out.getvalue(), ContentType="image/jpeg",
                      Metadata={"openid": owner})
        env = bucket.removeprefix("app-")  # the app's bucket is app-{env}; a file id is cloud://{env}.{bucket}/…
        try:
            notes.update_item(TableName="notes", Key={"_id": {"S": note_id}}, UpdateExpression="SET thumbID = :t",
                              ConditionExpression="#owner = :owner", ExpressionAttributeNames={"#owner": "_openid"},
                              ExpressionAttributeValues={":t": {"S": f"cloud://{env}.{bucket}/{thumb}"},
                                                         ":owner": {"S": owner}})
        except notes.exceptions.ConditionalCheckFailedException:
            print(f"{key}: no note {note_id} of its owner; thumbnail made, no note updated")
        done.append(thumb)
    return {"thumbnails": done}
