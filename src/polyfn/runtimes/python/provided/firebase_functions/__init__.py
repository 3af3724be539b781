"""polyfn's `firebase_functions`: what Firebase's Python functions SDK offers HTTPS functions, on polyfn.

`from firebase_functions import https_fn` then `@https_fn.on_call()` or `@https_fn.on_request()`; the
decorated function is an HTTP function of polyfn's `gcp` flavor. Options (`region`, `memory`, `cors`, …)
are accepted and ignored: polyfn's own function settings apply.
"""

from firebase_functions import https_fn, logger, options

__all__ = ["https_fn", "logger", "options"]
