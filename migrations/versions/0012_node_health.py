"""nodes: what each node last saw of the database and the message queue

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 10:15:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('nodes') as batch:
        batch.add_column(sa.Column('health', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('nodes') as batch:
        batch.drop_column('health')
