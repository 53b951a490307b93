"""security epoch: a version number per organisation and per user of what decides access

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 09:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('securityepoch',
    sa.Column('organizationid', sa.String(length=36), nullable=False),
    sa.Column('principalid', sa.String(length=36), nullable=False),
    sa.Column('epoch', sa.BigInteger(), nullable=False),
    sa.Column('changedon', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('organizationid', 'principalid', name=op.f('pk_securityepoch'))
    )


def downgrade() -> None:
    op.drop_table('securityepoch')
