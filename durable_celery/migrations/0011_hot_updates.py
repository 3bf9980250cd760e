"""Let a replay step update its run in place (PostgreSQL HOT updates).

A step's UPDATE of ``durable_celery_workflowexecution`` changes the run's version, its step claim
and ``updated_at``. While any index named one of those columns, PostgreSQL wrote a new entry in
every index of the table (thirteen of them, a GIN among them) for every step, claim and settled
fan-out member. Now none does: the step-request index lists the runs asking for a step by
``created_at``, the step claim has neither an index nor a foreign-key constraint (claims are
looked up among active runs; without an index, the constraint would make deleting a worker row
scan every run), and on PostgreSQL the table leaves a fifth of each page free so the new row
version fits next to the old one. Also dropped: the history's lone ``execution_id`` index (the
position and observed-step indexes lead with it) and, on PostgreSQL, the ``LIKE`` index Django
adds to the unique ``run_id`` (nothing searches run ids by prefix).

Without its index, a dead process's step claims are found by scanning the active runs; the new
``Worker.recovered_at`` makes the sweeper do that once per dead process, not at every pass.
"""

import django.db.models.deletion
from django.db import migrations, models

#: Percent of each page of the execution table that inserts fill (PostgreSQL).
FILLFACTOR = 80


def _table(apps):
    return apps.get_model("durable_celery", "WorkflowExecution")._meta.db_table


def _run_id_like_indexes(schema_editor, table):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexdef LIKE %s",
                       [table, "%(run_id varchar_pattern_ops)%"])
        return [name for (name,) in cursor.fetchall()]


def leave_room_for_updates(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    quote, table = schema_editor.quote_name, _table(apps)
    schema_editor.execute(f"ALTER TABLE {quote(table)} SET (fillfactor = {FILLFACTOR})")
    for name in _run_id_like_indexes(schema_editor, table):
        schema_editor.execute(f"DROP INDEX IF EXISTS {quote(name)}")


def fill_pages(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    quote, table = schema_editor.quote_name, _table(apps)
    schema_editor.execute(f"ALTER TABLE {quote(table)} RESET (fillfactor)")
    schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {quote(table + '_run_id_like')} "
                          f"ON {quote(table)} (run_id varchar_pattern_ops)")


class Migration(migrations.Migration):

    dependencies = [
        ('durable_celery', '0010_outcome_counter'),
    ]

    operations = [
        migrations.AddField(
            model_name='worker',
            name='recovered_at',
            field=models.DateTimeField(blank=True, help_text='when a live worker took back what this dead process held (cleared by its next heartbeat, should it beat again)', null=True),
        ),
        migrations.RemoveIndex(
            model_name='workflowexecution',
            name='durable_exec_stepreq_idx',
        ),
        migrations.AlterField(
            model_name='historyevent',
            name='execution',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='history', to='durable_celery.workflowexecution'),
        ),
        migrations.AlterField(
            model_name='workflowexecution',
            name='step_claimed_by',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, help_text='the worker process running a replay step of this run now', null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='durable_celery.worker'),
        ),
        migrations.AddIndex(
            model_name='workflowexecution',
            index=models.Index(condition=models.Q(('step_requested', True)), fields=['created_at'], name='durable_exec_stepreq_idx'),
        ),
        migrations.RunPython(leave_room_for_updates, fill_pages, elidable=False),
    ]
