"""jobs: an index on (runbook, id)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 16:00:00

The job page's time left reads the last jobs of one runbook (services/step_durations.py):
the index finds them newest first without walking every job.
"""
from alembic import op

# revision identifiers, used by Alembic.
revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_runbook_id", ["runbook", "id"], unique=False)


def downgrade():
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_runbook_id")
