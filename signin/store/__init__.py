"""The store layer: Redis and SQL, and nothing of HTTP or of the rules.

The token store and its records and scripts (``tokens/``), the Redis client
and the embedded redis-server, the breaker that rests a store that hung, the
database binding and its tables, and the few other Redis structures the rules
need (a TOTP code used once, the addresses a user signed in from). Which
exceptions mean a store is out of reach is said once, in ``outages``.
"""
