"""device scope: what the server last verified each device holds (scope reconciliation)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 11:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('devicescope',
    sa.Column('deviceid', sa.String(length=36), nullable=False),
    sa.Column('organizationid', sa.String(length=36), nullable=False),
    sa.Column('epoch', sa.BigInteger(), nullable=False),
    sa.Column('cursor', sa.BigInteger(), nullable=False),
    sa.Column('checkedon', sa.DateTime(), nullable=False),
    sa.Column('state', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('deviceid', name=op.f('pk_devicescope'))
    )


def downgrade() -> None:
    op.drop_table('devicescope')
