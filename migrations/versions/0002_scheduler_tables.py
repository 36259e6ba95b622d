"""scheduler tables: job claims and APScheduler's job store

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 20:40:00

Before this revision the scheduler created both tables itself on first start. A database
where it already did so is adopted as it is: a table that exists is left alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _exists(table: str) -> bool:
    if context.is_offline_mode():
        return False
    return sa.inspect(op.get_bind()).has_table(table)


def upgrade() -> None:
    if not _exists('hotwash_job_runs'):
        op.create_table('hotwash_job_runs',
        sa.Column('job_id', sa.String(length=191), nullable=False),
        sa.Column('slot', sa.DateTime(timezone=True), nullable=False),
        sa.Column('owner', sa.String(length=191), nullable=False),
        sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('outcome', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('job_id', 'slot', name=op.f('pk_hotwash_job_runs'))
        )
    if not _exists('apscheduler_jobs'):
        op.create_table('apscheduler_jobs',
        sa.Column('id', sa.Unicode(length=191), nullable=False),
        sa.Column('next_run_time', sa.Float(precision=25), nullable=True),
        sa.Column('job_state', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_apscheduler_jobs'))
        )
        op.create_index(op.f('ix_apscheduler_jobs_next_run_time'), 'apscheduler_jobs',
                        ['next_run_time'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_apscheduler_jobs_next_run_time'), table_name='apscheduler_jobs')
    op.drop_table('apscheduler_jobs')
    op.drop_table('hotwash_job_runs')
