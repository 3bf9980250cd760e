"""Indexes for finding entities: ``entity`` on every database, and on PostgreSQL a GIN index
(``jsonb_path_ops``) on the entity document for ``@>`` containment queries.

Both are created with ``RunPython`` because the GIN index exists only on PostgreSQL: the model
state does not change, so ``makemigrations --check`` stays clean on every backend.
"""

from django.db import migrations

ENTITY_INDEX = "durable_exec_entity_idx"
DOCUMENT_INDEX = "durable_exec_document_gin"


def _table(apps, schema_editor):
    model = apps.get_model("durable_celery", "WorkflowExecution")
    return schema_editor.quote_name(model._meta.db_table)


def create_indexes(apps, schema_editor):
    table = _table(apps, schema_editor)
    quote = schema_editor.quote_name
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {quote(ENTITY_INDEX)} ON {table} "
        f"({quote('entity')}, {quote('created_at')})")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {quote(DOCUMENT_INDEX)} ON {table} "
            f"USING gin ({quote('document')} jsonb_path_ops)")


def drop_indexes(apps, schema_editor):
    quote = schema_editor.quote_name
    for name in (DOCUMENT_INDEX, ENTITY_INDEX):
        schema_editor.execute(f"DROP INDEX IF EXISTS {quote(name)}")


class Migration(migrations.Migration):

    dependencies = [
        ("durable_celery", "0003_workflow_thread"),
    ]

    operations = [
        migrations.RunPython(create_indexes, drop_indexes, elidable=False),
    ]
