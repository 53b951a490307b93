"""business unit can be disabled

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 11:50:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('businessunit', schema=None) as batch_op:
        batch_op.add_column(sa.Column('isdisabled', sa.Boolean(), nullable=True))
    op.execute(sa.text('UPDATE businessunit SET isdisabled = false'))


def downgrade() -> None:
    with op.batch_alter_table('businessunit', schema=None) as batch_op:
        batch_op.drop_column('isdisabled')
