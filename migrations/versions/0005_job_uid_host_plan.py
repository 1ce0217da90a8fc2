"""job uid (names run directories on servers), each host's stored plan

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 22:00:00

"""
import uuid

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('uid', sa.String(length=32), nullable=True))
    jobs = sa.table('jobs', sa.column('id', sa.Integer), sa.column('uid', sa.String))
    connection = op.get_bind()
    for (job_id,) in connection.execute(sa.select(jobs.c.id)).all():
        connection.execute(jobs.update().where(jobs.c.id == job_id)
                           .values(uid=uuid.uuid4().hex))
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.alter_column('uid', existing_type=sa.String(length=32), nullable=False)
        batch_op.create_unique_constraint('uq_jobs_uid', ['uid'])

    with op.batch_alter_table('job_hosts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('plan', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('job_hosts', schema=None) as batch_op:
        batch_op.drop_column('plan')

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_constraint('uq_jobs_uid', type_='unique')
        batch_op.drop_column('uid')
