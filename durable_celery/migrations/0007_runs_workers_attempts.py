"""Runs, the worker registry, activity attempts, step claims, heartbeats and timeouts.

A workflow id may now have several runs: existing executions each get a run id of their own
(filled row by row before the column becomes unique), and only one run per id may be active.
"""

import uuid

import django.db.models.deletion
from django.db import migrations, models

import durable_celery.models


def fill_run_ids(apps, schema_editor):
    executions = apps.get_model("durable_celery", "WorkflowExecution")
    rows = executions.objects.using(schema_editor.connection.alias)
    for pk in rows.filter(run_id__isnull=True).values_list("pk", flat=True):
        rows.filter(pk=pk).update(run_id=uuid.uuid4().hex)


class Migration(migrations.Migration):

    dependencies = [
        ('durable_celery', '0006_hook_retries'),
    ]

    operations = [
        migrations.CreateModel(
            name='ActivityAttempt',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('number', models.PositiveIntegerField()),
                ('worker_name', models.CharField(blank=True, default='', max_length=255)),
                ('celery_task_id', models.CharField(blank=True, max_length=255, null=True)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField()),
                ('outcome', models.CharField(choices=[('failed', 'failed'), ('timed_out', 'timed out'), ('worker_lost', 'worker lost')], max_length=16)),
                ('error', models.JSONField(blank=True, null=True)),
                ('retry_delay', models.FloatField(blank=True, help_text='seconds waited before the next attempt; empty if none', null=True)),
            ],
            options={
                'ordering': ['event', 'finished_at', 'number'],
            },
        ),
        migrations.CreateModel(
            name='Worker',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(help_text='Celery node name of the worker', max_length=255)),
                ('hostname', models.CharField(max_length=255)),
                ('pid', models.PositiveIntegerField()),
                ('queues', models.JSONField(blank=True, default=list, help_text='Celery queues it consumes')),
                ('pool', models.CharField(blank=True, default='', max_length=32)),
                ('version', models.CharField(blank=True, default='', max_length=32)),
                ('started_at', models.DateTimeField(auto_now_add=True)),
                ('heartbeat_at', models.DateTimeField()),
                ('stopped_at', models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.RemoveConstraint(
            model_name='workflowexecution',
            name='durable_exec_ns_wfid_uniq',
        ),
        migrations.RemoveField(
            model_name='historyevent',
            name='claimed_by',
        ),
        migrations.AddField(
            model_name='historyevent',
            name='heartbeat_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='historyevent',
            name='heartbeat_details',
            field=models.JSONField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='historyevent',
            name='dispatched_at',
            field=models.DateTimeField(blank=True, help_text='when the current activity attempt was sent to its queue', null=True),
        ),
        migrations.AddField(
            model_name='historyevent',
            name='started_at',
            field=models.DateTimeField(blank=True, help_text='when the current activity attempt started', null=True),
        ),
        migrations.AddField(
            model_name='workflowexecution',
            name='cancel_requested_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='workflowexecution',
            name='parent_run_id',
            field=models.CharField(blank=True, max_length=32, null=True),
        ),
        migrations.AddField(
            model_name='workflowexecution',
            name='previous_run_id',
            field=models.CharField(blank=True, help_text='the run this one continued as new from', max_length=32, null=True),
        ),
        migrations.AddField(
            model_name='workflowexecution',
            name='run_id',
            field=models.CharField(max_length=32, null=True),
        ),
        migrations.RunPython(fill_run_ids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name='workflowexecution',
            name='run_id',
            field=models.CharField(default=durable_celery.models.new_run_id, max_length=32, unique=True),
        ),
        migrations.AddField(
            model_name='workflowexecution',
            name='step_claimed_until',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='workflowexecution',
            name='step_failures',
            field=models.PositiveIntegerField(default=0, help_text='consecutive steps whose decision could not be recorded'),
        ),
        migrations.AddField(
            model_name='workflowexecution',
            name='timeout_at',
            field=models.DateTimeField(blank=True, help_text='when execution_timeout interrupts the run', null=True),
        ),
        migrations.AlterField(
            model_name='historyevent',
            name='lease_until',
            field=models.DateTimeField(blank=True, help_text='when the current activity attempt is presumed lost or has timed out', null=True),
        ),
        migrations.AlterField(
            model_name='timer',
            name='kind',
            field=models.CharField(choices=[('sleep', 'sleep'), ('wait_timeout', 'wait timeout'), ('activity_retry', 'activity retry'), ('workflow_retry', 'workflow retry'), ('hook_retry', 'hook retry'), ('execution_timeout', 'execution timeout')], max_length=20),
        ),
        migrations.AlterField(
            model_name='workflowexecution',
            name='status',
            field=models.CharField(choices=[('pending', 'pending'), ('running', 'running'), ('completed', 'completed'), ('failed', 'failed'), ('interrupted', 'interrupted'), ('continued', 'continued as new')], default='pending', max_length=16),
        ),
        migrations.AlterField(
            model_name='workflowthread',
            name='status',
            field=models.CharField(choices=[('pending', 'pending'), ('running', 'running'), ('completed', 'completed'), ('failed', 'failed'), ('interrupted', 'interrupted'), ('continued', 'continued as new')], default='running', max_length=16),
        ),
        migrations.AddField(
            model_name='activityattempt',
            name='event',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='attempt_log', to='durable_celery.historyevent'),
        ),
        migrations.AddField(
            model_name='worker',
            name='parent',
            field=models.ForeignKey(blank=True, help_text="the worker's main process, for a pool process", null=True, on_delete=django.db.models.deletion.CASCADE, related_name='processes', to='durable_celery.worker'),
        ),
        migrations.AddField(
            model_name='activityattempt',
            name='worker',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='durable_celery.worker'),
        ),
        migrations.AddField(
            model_name='historyevent',
            name='worker',
            field=models.ForeignKey(blank=True, help_text='the worker process running the current activity attempt', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='durable_celery.worker'),
        ),
        migrations.AddField(
            model_name='workflowexecution',
            name='step_claimed_by',
            field=models.ForeignKey(blank=True, help_text='the worker process running a replay step of this run now', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='durable_celery.worker'),
        ),
        migrations.AddIndex(
            model_name='workflowexecution',
            index=models.Index(fields=['namespace', 'workflow_id'], name='durable_exec_ns_wfid_idx'),
        ),
        migrations.AddIndex(
            model_name='workflowexecution',
            index=models.Index(fields=['previous_run_id'], name='durable_exec_previous_run_idx'),
        ),
        migrations.AddConstraint(
            model_name='workflowexecution',
            constraint=models.UniqueConstraint(condition=models.Q(('status__in', ['pending', 'running'])), fields=('namespace', 'workflow_id'), name='durable_exec_one_active_run'),
        ),
        migrations.AddIndex(
            model_name='worker',
            index=models.Index(fields=['heartbeat_at'], name='durable_worker_heartbeat_idx'),
        ),
        migrations.AddIndex(
            model_name='worker',
            index=models.Index(fields=['parent', 'pid'], name='durable_worker_parent_pid_idx'),
        ),
        migrations.AddIndex(
            model_name='activityattempt',
            index=models.Index(fields=['event', 'number'], name='durable_attempt_event_idx'),
        ),
    ]
