"""The public REST API under /api/v1: scoped tokens, JSON, OpenAPI 3.1, problem details.

`tokens` keeps the API tokens (only a hash of each is stored); `problems` is the one way an
answer says no (RFC 9457); `schemas` are the request and answer bodies, from which the
OpenAPI document is generated; `routes` are thin views that call the same services as the
pages, the CLI and the worker.
"""
