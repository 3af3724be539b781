"""AI prediction on upload: the seed's "AI model prediction" scenario, kept in its shape.

AWS Lambda code for an S3 upload: a handwritten digit uploaded under `uploads/` is classified, the result
written to `predictions/<name>.json` and returned as the seed returns it. The model (scikit-learn's SVC) is
trained at import on the digits dataset scikit-learn ships (1,797 8x8 images; no download), so it is
trained once per function zygote and every later instance is forked with it in memory.
What was fixed so that it runs (docs/scenarios.md):
- `event['s3']['bucket']['name']`: an S3 notification is `event['Records'][0]['s3']...`, and its keys are
  URL-encoded;
- `predict_image` was never defined, and `json` was used without being imported.
"""

import io
import json
import posixpath
import time
from urllib.parse import unquote_plus

import boto3
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.svm import SVC

t0 = time.perf_counter()
_digits = load_digits()
MODEL = SVC(gamma=0.001, C=10).fit(_digits.data, _digits.target)
TRAIN_MS = (time.perf_counter() - t0) * 1000
s3_client = boto3.client("s3")


def predict_image(bucket_name, object_key):
    """A dark digit on a light background, any size → (digit, probability-free score margin)."""
    body = s3_client.get_object(Bucket=bucket_name, Key=object_key)["Body"].read()
    with Image.open(io.BytesIO(body)) as img:
        small = img.convert("L").resize((8, 8), Image.Resampling.BOX)
    x = (255.0 - np.asarray(small, dtype=float)) * 16.0 / 255.0  # the dataset's scale: 0 = paper, 16 = ink
    scores = MODEL.decision_function(x.reshape(1, -1))[0]
    best = int(np.argmax(scores))
    return {"key": object_key, "digit": int(MODEL.classes_[best]), "score": round(float(scores[best]), 3),
            "model_trained_ms": round(TRAIN_MS, 1)}


def handle(event, context):
    # 获取上传的图片信息 (the uploaded image)
    record = event["Records"][0]
    bucket_name = record["s3"]["bucket"]["name"]
    object_key = unquote_plus(record["s3"]["object"]["key"])
    # 调用 AI 模型进行预测 (predict)
    prediction = predict_image(bucket_name, object_key)
    stem = posixpath.splitext(posixpath.basename(object_key))[0]
    s3_client.put_object(Bucket=bucket_name, Key=f"predictions/{stem}.json", Body=json.dumps(prediction).encode(),
                         ContentType="application/json")
    # 返回预测结果 (the result)
    return {"statusCode": 200, "body": json.dumps(prediction)}
