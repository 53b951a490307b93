"""opledger status index: each push finds the device's rejected creates without a ledger scan

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 19:50:00.000000
"""

from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_opledger_status', 'opledger', ['deviceid', 'status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_opledger_status', table_name='opledger')
