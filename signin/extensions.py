"""Extensions created unbound, bound to an app in ``create_app``."""

from __future__ import annotations

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase

from signin.redis_client import RedisClient


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
redis_client = RedisClient()
