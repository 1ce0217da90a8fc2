"""gates (a paused job's promote/abort request) and builds (a job's target version)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 03:30:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('gate_request', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('gate_request_by_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('target_version', sa.String(length=64), nullable=True))
        batch.create_foreign_key('fk_jobs_gate_request_by_id_users', 'users',
                                 ['gate_request_by_id'], ['id'])


def downgrade():
    with op.batch_alter_table('jobs') as batch:
        batch.drop_constraint('fk_jobs_gate_request_by_id_users', type_='foreignkey')
        batch.drop_column('target_version')
        batch.drop_column('gate_request_by_id')
        batch.drop_column('gate_request')
