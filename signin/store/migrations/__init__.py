"""The users database's Alembic migrations, shipped in the package: ``signin db upgrade`` runs them.

``env.py`` is Alembic's; ``versions/`` holds one revision a schema change, the
first (``0001``) exactly the tables signin made before it had migrations.
``signin.store.schema`` runs them; a developer makes a new one with
``alembic revision --autogenerate`` (see docs/development.md).
"""
