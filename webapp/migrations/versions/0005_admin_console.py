"""admin console: audit log and client scripts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 10:45:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('adminaudit',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('organizationid', sa.String(length=36), nullable=False),
    sa.Column('systemuserid', sa.String(length=36), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target', sa.String(length=200), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('createdon', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_adminaudit'))
    )
    with op.batch_alter_table('adminaudit', schema=None) as batch_op:
        batch_op.create_index('ix_adminaudit_org', ['organizationid', 'createdon'], unique=False)

    op.create_table('clientscript',
    sa.Column('organizationid', sa.String(length=36), nullable=False),
    sa.Column('entity', sa.String(length=64), nullable=False),
    sa.Column('event', sa.String(length=16), nullable=False),
    sa.Column('filename', sa.String(length=200), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('uploadedon', sa.DateTime(), nullable=False),
    sa.Column('uploadedby', sa.String(length=36), nullable=True),
    sa.PrimaryKeyConstraint('organizationid', 'entity', 'event', name=op.f('pk_clientscript'))
    )


def downgrade() -> None:
    op.drop_table('clientscript')
    with op.batch_alter_table('adminaudit', schema=None) as batch_op:
        batch_op.drop_index('ix_adminaudit_org')

    op.drop_table('adminaudit')
