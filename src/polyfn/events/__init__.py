"""Events: polyfn's internal CloudEvents 1.0 envelope and the vendor event shapes built from it.

Every trigger (storage, queue, cron, brokers, logs) produces a `CloudEvent` with one of the `TYPE_*`
types below and sends it to a function as an invocation of kind `"cloudevent"` whose body is the event in
CloudEvents structured JSON form. Inside the instance the function's flavor shapes it into what the
vendor's code expects (S3 `Records` for `aws`, OSS `events` for `aliyun`, …); vendor shapes live in one
module per vendor in this package. The `native` flavor passes the CloudEvent through as a dict.
"""

from polyfn.events.cloudevent import (
    TYPE_BROKER_MESSAGE,
    TYPE_LOG_BATCH,
    TYPE_OBJECT_CREATED,
    TYPE_OBJECT_DELETED,
    TYPE_QUEUE_BATCH,
    TYPE_TIMER,
    CloudEvent,
    new_event,
)

__all__ = [
    "TYPE_BROKER_MESSAGE",
    "TYPE_LOG_BATCH",
    "TYPE_OBJECT_CREATED",
    "TYPE_OBJECT_DELETED",
    "TYPE_QUEUE_BATCH",
    "TYPE_TIMER",
    "CloudEvent",
    "new_event",
]
