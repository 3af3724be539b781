"""A bucket's settings, each a sub-resource with Get/Put(/Delete): ACL, versioning, tagging, CORS, Object Lock,
default encryption, ownership controls, public access block. Each is kept in the bucket's record."""

from __future__ import annotations

from typing import TYPE_CHECKING

from polyfn.storage import acl, cors, policy
from polyfn.storage.errors import S3Error
from polyfn.storage.wire import Request, Send, e, malformed, parse_xml, read_all, respond, respond_xml
from polyfn.storage.write_request import check_tags, tags_xml

if TYPE_CHECKING:
    from polyfn.storage.context import S3Context
    from polyfn.storage.sigv4 import Identity

BUCKET_TAGS = 50
MAX_RETENTION_YEARS = 100  # an Object Lock default retention's bound (36,500 days)
_PAB = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")


def _not_found(code: str, message: str) -> S3Error:
    return S3Error(404, code, message)


async def _body(req: Request) -> bytes:
    return await read_all(req.receive)


# -- ACL ------------------------------------------------------------------------------------------------


def block_public(app: S3Context, bucket: str, grants: list[tuple[str, str, str]]) -> None:
    """A bucket whose public access block says BlockPublicAcls refuses ACLs that grant to everyone."""
    acl.refuse_public(app.backend.bucket(bucket), grants)


async def get_bucket_acl(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    await respond_xml(send, "AccessControlPolicy", acl.to_xml(app.backend.bucket(req.bucket).acl))


async def put_bucket_acl(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    body = await _body(req)
    grants = acl.from_request(req.headers, body, app.backend.bucket(req.bucket).ownership)
    block_public(app, req.bucket, grants)
    app.backend.update_bucket(req.bucket, acl=grants)
    await respond(send, 200, [])


# -- versioning -----------------------------------------------------------------------------------------


async def get_versioning(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    status = app.backend.bucket(req.bucket).versioning
    await respond_xml(send, "VersioningConfiguration", f"<Status>{status}</Status>" if status else "")


async def put_versioning(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    root = parse_xml(await _body(req))
    status = root.findtext("Status")
    if root.tag != "VersioningConfiguration" or status not in ("Enabled", "Suspended"):
        raise malformed()
    if root.findtext("MfaDelete") == "Enabled":
        raise S3Error(501, "NotImplemented", "MFA delete is not implemented")
    bucket = app.backend.bucket(req.bucket)
    if bucket.lock.get("enabled") and status != "Enabled":
        raise S3Error(409, "InvalidBucketState", "An Object Lock configuration is present on this bucket, so the "
                      "versioning state cannot be changed.")
    app.backend.update_bucket(req.bucket, versioning=status)
    await respond(send, 200, [])


# -- tagging --------------------------------------------------------------------------------------------


def parse_tagging(body: bytes, limit: int) -> dict[str, str]:
    root = parse_xml(body)
    tagset = root.find("TagSet")
    if root.tag != "Tagging" or tagset is None:
        raise malformed()
    return check_tags([(t.findtext("Key") or "", t.findtext("Value") or "") for t in tagset.findall("Tag")], limit)


async def get_bucket_tagging(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    tags = app.backend.bucket(req.bucket).tags
    if not tags:
        raise _not_found("NoSuchTagSet", "The TagSet does not exist")
    await respond_xml(send, "Tagging", tags_xml(tags))


async def put_bucket_tagging(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    app.backend.update_bucket(req.bucket, tags=parse_tagging(await _body(req), BUCKET_TAGS))
    await respond(send, 204, [])


async def delete_bucket_tagging(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    app.backend.update_bucket(req.bucket, tags={})
    await respond(send, 204, [])


# -- CORS -----------------------------------------------------------------------------------------------


async def get_cors(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    rules = app.backend.bucket(req.bucket).cors
    if not rules:
        raise _not_found("NoSuchCORSConfiguration", "The CORS configuration does not exist")
    await respond_xml(send, "CORSConfiguration", cors.to_xml(rules))


async def put_cors(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    root = parse_xml(await _body(req))
    if root.tag != "CORSConfiguration":
        raise malformed()
    app.backend.update_bucket(req.bucket, cors=cors.parse_rules(root))
    await respond(send, 200, [])


async def delete_cors(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    app.backend.update_bucket(req.bucket, cors=[])
    await respond(send, 204, [])


# -- Object Lock ----------------------------------------------------------------------------------------


async def get_object_lock(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    lock = app.backend.bucket(req.bucket).lock
    if not lock.get("enabled"):
        raise _not_found("ObjectLockConfigurationNotFoundError", "Object Lock configuration does not exist for "
                         "this bucket")
    rule = ""
    if lock.get("mode"):
        period = f"<Days>{lock['days']}</Days>" if lock.get("days") else f"<Years>{lock['years']}</Years>"
        rule = f"<Rule><DefaultRetention><Mode>{lock['mode']}</Mode>{period}</DefaultRetention></Rule>"
    await respond_xml(send, "ObjectLockConfiguration", f"<ObjectLockEnabled>Enabled</ObjectLockEnabled>{rule}")


async def put_object_lock(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    root = parse_xml(await _body(req))
    if root.tag != "ObjectLockConfiguration" or root.findtext("ObjectLockEnabled") != "Enabled":
        raise malformed()
    bucket = app.backend.bucket(req.bucket)
    if bucket.versioning != "Enabled":
        raise S3Error(409, "InvalidBucketState", "Versioning must be 'Enabled' on the bucket to apply a Object Lock "
                      "configuration")
    lock: dict[str, object] = {"enabled": True}
    dr = root.find("Rule/DefaultRetention")
    if root.find("Rule") is not None and dr is None:
        raise malformed()
    if dr is not None:
        mode, days, years = dr.findtext("Mode"), dr.findtext("Days"), dr.findtext("Years")
        if mode not in ("GOVERNANCE", "COMPLIANCE"):
            raise malformed()
        if (days is None) == (years is None):
            raise malformed()
        try:
            n = int(days or years or "")
        except ValueError:
            raise malformed() from None
        if n <= 0:
            raise S3Error(400, "InvalidRetentionPeriod", "Default retention period must be a positive integer value.")
        if n > (MAX_RETENTION_YEARS * 365 if days else MAX_RETENTION_YEARS):  # (each new version's date must be one)
            raise S3Error(400, "InvalidRetentionPeriod", f"Default retention period must be at most "
                          f"{MAX_RETENTION_YEARS} years ({MAX_RETENTION_YEARS * 365} days).")
        lock.update({"mode": mode, "days" if days else "years": n})
    app.backend.update_bucket(req.bucket, lock=lock)
    await respond(send, 200, [])


# -- default encryption ---------------------------------------------------------------------------------


async def get_encryption(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    bucket = app.backend.bucket(req.bucket)
    alg = bucket.encryption
    if not alg:
        raise _not_found("ServerSideEncryptionConfigurationNotFoundError", "The server side encryption "
                         "configuration was not found")
    kms = f"<KMSMasterKeyID>{e(bucket.kms_key_id)}</KMSMasterKeyID>" if bucket.kms_key_id else ""
    await respond_xml(send, "ServerSideEncryptionConfiguration", "<Rule><ApplyServerSideEncryptionByDefault>"
                      f"<SSEAlgorithm>{alg}</SSEAlgorithm>{kms}</ApplyServerSideEncryptionByDefault>"
                      "<BucketKeyEnabled>false</BucketKeyEnabled></Rule>")


async def put_encryption(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    root = parse_xml(await _body(req))
    alg = root.findtext("Rule/ApplyServerSideEncryptionByDefault/SSEAlgorithm")
    if root.tag != "ServerSideEncryptionConfiguration" or not alg:
        raise malformed()
    if alg not in ("AES256", "aws:kms"):
        raise malformed()
    kms = root.findtext("Rule/ApplyServerSideEncryptionByDefault/KMSMasterKeyID") or ""
    app.backend.update_bucket(req.bucket, encryption=alg, kms_key_id=kms if alg == "aws:kms" else "")
    await respond(send, 200, [])


async def delete_encryption(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    app.backend.update_bucket(req.bucket, encryption="", kms_key_id="")
    await respond(send, 204, [])


# -- policy ---------------------------------------------------------------------------------------------


async def get_policy(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    text = app.backend.bucket(req.bucket).policy
    if not text:
        raise _not_found("NoSuchBucketPolicy", "The bucket policy does not exist")
    await respond(send, 200, [(b"content-type", b"application/json")], text.encode())


async def put_policy(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    text = (await _body(req)).decode("utf-8", "replace")
    doc = policy.parse(text)
    if app.backend.bucket(req.bucket).public_access_block.get("BlockPublicPolicy") and policy.is_public(doc):
        raise S3Error(403, "AccessDenied", "Access Denied: the bucket's public access block refuses public policies")
    app.backend.update_bucket(req.bucket, policy=text)
    await respond(send, 204, [])


async def delete_policy(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    app.backend.update_bucket(req.bucket, policy="")
    await respond(send, 204, [])


async def get_policy_status(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    bucket = app.backend.bucket(req.bucket)
    public = (bool(bucket.policy) and policy.is_public(policy.parse(bucket.policy))) or any(
        kind == "uri" and who.endswith(("/AllUsers", "/AuthenticatedUsers")) for kind, who, _ in bucket.acl)
    await respond_xml(send, "PolicyStatus", f"<IsPublic>{'true' if public else 'false'}</IsPublic>")


# -- ownership controls, public access block ------------------------------------------------------------


async def get_ownership(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    own = app.backend.bucket(req.bucket).ownership
    if not own:
        raise _not_found("OwnershipControlsNotFoundError", "The bucket ownership controls were not found")
    await respond_xml(send, "OwnershipControls", f"<Rule><ObjectOwnership>{own}</ObjectOwnership></Rule>")


async def put_ownership(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    own = parse_xml(await _body(req)).findtext("Rule/ObjectOwnership")
    if own not in ("BucketOwnerEnforced", "BucketOwnerPreferred", "ObjectWriter"):
        raise malformed()
    app.backend.update_bucket(req.bucket, ownership=own)
    await respond(send, 200, [])


async def delete_ownership(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    app.backend.update_bucket(req.bucket, ownership="")
    await respond(send, 204, [])


async def get_public_access_block(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    pab = app.backend.bucket(req.bucket).public_access_block
    if not pab:
        raise _not_found("NoSuchPublicAccessBlockConfiguration", "The public access block configuration was not "
                         "found")
    inner = "".join(f"<{k}>{'true' if pab.get(k) else 'false'}</{k}>" for k in _PAB)
    await respond_xml(send, "PublicAccessBlockConfiguration", inner)


async def put_public_access_block(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    root = parse_xml(await _body(req))
    if root.tag != "PublicAccessBlockConfiguration":
        raise malformed()
    pab = {k: (root.findtext(k) or "").lower() == "true" for k in _PAB}
    app.backend.update_bucket(req.bucket, public_access_block=pab)
    await respond(send, 200, [])


async def delete_public_access_block(app: S3Context, req: Request, send: Send, ident: Identity | None) -> None:
    app.backend.update_bucket(req.bucket, public_access_block={})
    await respond(send, 204, [])

