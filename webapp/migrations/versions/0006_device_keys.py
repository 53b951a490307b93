"""device keys: the server-held copy of each device store's data key (encryption at rest)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 11:10:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('devicekey',
    sa.Column('deviceid', sa.String(length=36), nullable=False),
    sa.Column('organizationid', sa.String(length=36), nullable=False),
    sa.Column('systemuserid', sa.String(length=36), nullable=False),
    sa.Column('datakey', sa.String(length=64), nullable=False),
    sa.Column('createdon', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('deviceid', name=op.f('pk_devicekey'))
    )
    with op.batch_alter_table('devicekey', schema=None) as batch_op:
        batch_op.create_index('ix_devicekey_user', ['organizationid', 'systemuserid'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('devicekey', schema=None) as batch_op:
        batch_op.drop_index('ix_devicekey_user')

    op.drop_table('devicekey')
