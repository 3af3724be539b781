"""The identity core of the application platform (DESIGN.md §7): apps, their end users, tokens and rules.

An **app** is a client-facing project: WeChat's cloud `env`, a Firebase project. It says which origins may
call it from a browser, how its users sign in (anonymously, with an email and password, or through a
function the developer writes: WeChat's `wx.login` code → openid exchange, any external identity) and what
each signed-in user may read and write (security rules per database collection and for files).

A **user** is known to functions by a signed, expiring access token this node issues (`tokens.py`); a
refresh token (one per session, rotated at each use) gets new ones, and revoking the session or the user
stops both. The core knows no wire format: the faces are `http.py` (the client SDK's endpoints under
`/app/{env}/…`), `firebase.py` (Firebase's callable protocol) and the flavors, which put the verified
`Identity` where each vendor's code looks for it.

Modules: `model` (apps, users, identities: plain data), `passwords` (scrypt), `tokens` (JWTs, keys derived
from the node key and rotated, a verification cache), `rules` (security rule expressions, pure),
`service` (the one object the node builds).
"""
