"""The web console: static pages served at the gateway's root that talk only to the public REST API.

Nothing here is durable and nothing runs on the server but file serving: the pages sign in with a
project API key held in the browser's session storage and call `/api/v1` with it, so a read-only
key sees every page and is refused every write by the API itself.
"""
