"""fleet reachability, event index by host

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 13:00:00

Servers remember whether their SSH port answered the last reachability probe, and
job events get an index on (job_id, host, seq) so one server's output can be paged by
seq without walking every other server's events.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reachable", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("last_checked", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("reach_error", sa.String(length=255), nullable=True))

    with op.batch_alter_table("job_events", schema=None) as batch_op:
        batch_op.create_index("ix_job_events_job_host_seq", ["job_id", "host", "seq"],
                              unique=False)


def downgrade():
    with op.batch_alter_table("job_events", schema=None) as batch_op:
        batch_op.drop_index("ix_job_events_job_host_seq")

    with op.batch_alter_table("servers", schema=None) as batch_op:
        batch_op.drop_column("reach_error")
        batch_op.drop_column("last_checked")
        batch_op.drop_column("reachable")
