# visrec 0.7: scheduled-run records (health page) and A/B experiments; names no host app.

import django.db.models.deletion
import django.utils.timezone
import visrec.models
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('visrec', '0006_event_trust_and_ledger'),
    ]

    operations = [
        migrations.CreateModel(
            name='TaskRun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('task', models.CharField(max_length=50)),
                ('started_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('outcome', models.CharField(choices=[('running', 'running'), ('done', 'done'), ('skipped', 'nothing done'), ('failed', 'failed')], default='running', max_length=10)),
                ('summary', models.TextField(blank=True, help_text='what the run did, or why it did nothing or failed')),
                ('details', models.JSONField(blank=True, default=dict)),
            ],
            options={
                'ordering': ['-started_at'],
            },
        ),
        migrations.AddField(
            model_name='interactionevent',
            name='arm',
            field=models.CharField(blank=True, choices=[('a', 'A'), ('b', 'B')], max_length=1),
        ),
        migrations.CreateModel(
            name='Experiment',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=100, unique=True)),
                ('surface', models.CharField(default='for_you', editable=False, max_length=20)),
                ('hypothesis', models.TextField(blank=True)),
                ('b_is_shop_list', models.BooleanField(default=False, help_text="arm B shows the shop's own list (SHOP_LIST)")),
                ('share_b', models.FloatField(default=0.5, help_text='the share of shoppers in arm B (0.01 to 0.99)')),
                ('salt', models.CharField(default=visrec.models._experiment_salt, editable=False, max_length=32)),
                ('started_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('ended_at', models.DateTimeField(blank=True, null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('version_a', models.ForeignKey(help_text='the recommender version arm A serves', limit_choices_to={'kind': 'recommender'}, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='visrec.modelversion')),
                ('version_b', models.ForeignKey(blank=True, help_text="the recommender version arm B serves (empty: the shop's own list)", limit_choices_to={'kind': 'recommender'}, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='visrec.modelversion')),
            ],
            options={
                'ordering': ['-started_at'],
            },
        ),
        migrations.AddField(
            model_name='interactionevent',
            name='experiment',
            field=models.ForeignKey(blank=True, help_text='the A/B test the shopper was in', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='events', to='visrec.experiment'),
        ),
        migrations.AddIndex(
            model_name='interactionevent',
            index=models.Index(fields=['experiment', 'arm', 'event_type'], name='visrec_event_experiment_arm'),
        ),
        migrations.AddIndex(
            model_name='taskrun',
            index=models.Index(fields=['task', 'started_at'], name='visrec_taskrun_task_time'),
        ),
        migrations.AddConstraint(
            model_name='experiment',
            constraint=models.UniqueConstraint(condition=models.Q(('ended_at__isnull', True)), fields=('surface',), name='visrec_experiment_one_running'),
        ),
        migrations.AddConstraint(
            model_name='experiment',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('b_is_shop_list', False), ('version_b__isnull', False)), models.Q(('b_is_shop_list', True), ('version_b__isnull', True)), _connector='OR'), name='visrec_experiment_b_is_version_or_shop'),
        ),
        migrations.AddConstraint(
            model_name='experiment',
            constraint=models.CheckConstraint(condition=models.Q(('share_b__gte', 0.01), ('share_b__lte', 0.99)), name='visrec_experiment_share_b_range'),
        ),
    ]
