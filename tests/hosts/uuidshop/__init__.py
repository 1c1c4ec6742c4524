"""A second kind of host: app label ``store``, UUID primary keys, other field names.

Only migrations and the "similar" path run here (``tests/test_migrations.py``); the demo and
the oscar sandbox (``tests/hosts/oscar``) cover the rest.
"""
