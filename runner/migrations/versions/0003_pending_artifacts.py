"""Schema version 3: ``pending_artifacts``, the files a live run has put into the artifact store
before its task's rows are committed (``gc`` keeps them, so a gc during a run loses nothing).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from runner.migrations.steps import set_version

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_artifacts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("task_key", sa.String(64), nullable=False),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id")),
        sa.Column("created_at", sa.Float),
    )
    op.create_index("ix_pending_artifacts_path", "pending_artifacts", ["path"])
    op.create_index("ix_pending_artifacts_task", "pending_artifacts", ["task_key"])
    set_version(3)


def downgrade() -> None:
    raise NotImplementedError("vitstudy does not downgrade a database: restore its backup")
