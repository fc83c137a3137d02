"""TOTP secrets encrypted at rest

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-03 14:00:00

- staff.totp_secret: wide enough for a Fernet token (about 140 characters), and every
  secret stored in the clear so far is encrypted in place (staff/twofactor/sealing.py).

The key is derived here as sealing.py derives it (HKDF-SHA256 from TWOFA_ENCRYPTION_KEY,
else SECRET_KEY, with the same info), copied rather than imported so that this migration
does the same thing whatever that module becomes. Run it with the production
configuration: a secret encrypted under another key cannot be read by the app (the
person is told to use a recovery code; `flask staff reset-2fa` starts them afresh).

Downgrade decrypts them again; it stops, changing nothing, if one cannot be decrypted.
"""
import base64
import re

import sqlalchemy as sa
from alembic import op
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app


# revision identifiers, used by Alembic.
revision = '0026'
down_revision = '0025'
branch_labels = None
depends_on = None

PURPOSE = b"newsletters.staff.totp-secret.v1"
# A secret in the clear, as twofactor.services made them (base32, 32 characters).
PLAIN = re.compile(r"[A-Z2-7]{32}")

staff = sa.table(
    'staff', sa.column('id', sa.Integer), sa.column('totp_secret', sa.String)
)


def _fernet() -> Fernet:
    cfg = current_app.config
    material = str(cfg.get("TWOFA_ENCRYPTION_KEY") or cfg["SECRET_KEY"]).encode("utf-8")
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PURPOSE).derive(material)
    return Fernet(base64.urlsafe_b64encode(key))


def _stored(bind) -> list[tuple[int, str]]:
    return list(
        bind.execute(
            sa.select(staff.c.id, staff.c.totp_secret).where(staff.c.totp_secret.is_not(None))
        )
    )


def _resize_totp_secret(old: int, new: int) -> None:
    # Changing a VARCHAR's length: PostgreSQL alters it in place; SQLite re-creates the
    # table (keeping its AUTOINCREMENT), and does not check lengths anyway.
    with op.batch_alter_table(
        'staff', schema=None, table_kwargs={'sqlite_autoincrement': True}
    ) as batch_op:
        batch_op.alter_column(
            'totp_secret',
            existing_type=sa.String(length=old),
            type_=sa.String(length=new),
            existing_nullable=True,
        )


def upgrade():
    _resize_totp_secret(64, 255)
    bind = op.get_bind()
    fernet = _fernet()
    for staff_id, secret in _stored(bind):
        if PLAIN.fullmatch(secret):
            sealed = fernet.encrypt(secret.encode("ascii")).decode("ascii")
            bind.execute(
                staff.update().where(staff.c.id == staff_id).values(totp_secret=sealed)
            )


def downgrade():
    bind = op.get_bind()
    fernet = _fernet()
    plain = {}
    for staff_id, stored in _stored(bind):
        if PLAIN.fullmatch(stored):
            continue
        try:
            plain[staff_id] = fernet.decrypt(stored.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError, ValueError):
            raise RuntimeError(
                f"The TOTP secret of staff {staff_id} cannot be decrypted with this "
                "configuration's key; nothing was changed. Run the downgrade with the key "
                "it was encrypted under, or reset that person's second factor first "
                "(flask staff reset-2fa)."
            ) from None
    for staff_id, secret in plain.items():
        bind.execute(staff.update().where(staff.c.id == staff_id).values(totp_secret=secret))
    _resize_totp_secret(255, 64)
