"""server builds (each server's build history) and a job's builds per server

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 18:10:00

``server_builds``: the build a server reported at the end of each job there, with the
job and its outcome on the server; a rollback goes back to the last good one before the
current build (tasks/planning/build_history.py). ``job_hosts.from_version`` and
``to_version``: the build a server ran when the job was recorded and the one the job
installs there (a rollback reads "1.4.8 → 1.4.7").
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "server_builds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reported_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.ForeignKeyConstraint(["server_id"], ["servers.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_server_builds_server_id", "server_builds", ["server_id", "id"],
                    unique=False)
    with op.batch_alter_table("job_hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("from_version", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("to_version", sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table("job_hosts", schema=None) as batch_op:
        batch_op.drop_column("to_version")
        batch_op.drop_column("from_version")
    op.drop_index("ix_server_builds_server_id", table_name="server_builds")
    op.drop_table("server_builds")
