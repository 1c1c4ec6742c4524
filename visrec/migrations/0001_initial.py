import django.db.models.deletion
import pgvector.django.vector
from django.conf import settings
from pgvector.django import VectorExtension
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.VISREC_PRODUCT_MODEL),
        migrations.swappable_dependency(settings.VISREC_IMAGE_MODEL),
    ]

    operations = [
        VectorExtension(),
        migrations.CreateModel(
            name='ModelVersion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('embedder', 'image embedder'), ('recommender', 'personal recommender')], max_length=20)),
                ('name', models.CharField(help_text='version string', max_length=100, unique=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('metrics', models.JSONField(blank=True, default=dict)),
                ('artefact', models.FileField(blank=True, upload_to='visrec/models/')),
                ('dimensions', models.PositiveIntegerField(blank=True, help_text='vector length (embedders)', null=True)),
                ('is_active', models.BooleanField(default=False)),
                ('activated_at', models.DateTimeField(blank=True, null=True)),
                ('notes', models.TextField(blank=True, help_text='why it was or was not promoted')),
            ],
            options={
                'ordering': ['-created_at'],
                'constraints': [models.UniqueConstraint(condition=models.Q(('is_active', True)), fields=('kind',), name='visrec_modelversion_one_active_per_kind')],
            },
        ),
        migrations.CreateModel(
            name='ImageEmbedding',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('model_version', models.CharField(max_length=100)),
                ('content_hash', models.CharField(blank=True, help_text='SHA-256 of the image file', max_length=64)),
                ('status', models.CharField(choices=[('pending', 'pending'), ('done', 'done'), ('failed', 'failed')], default='pending', max_length=10)),
                ('error', models.TextField(blank=True)),
                ('vector', pgvector.django.vector.VectorField(blank=True, null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('image', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='visrec_embeddings', to=settings.VISREC_IMAGE_MODEL)),
                ('product', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='visrec_image_embeddings', to=settings.VISREC_PRODUCT_MODEL)),
            ],
            options={
                'indexes': [models.Index(fields=['model_version', 'status'], name='visrec_imageemb_ver_status')],
                'constraints': [models.UniqueConstraint(fields=('image', 'model_version'), name='visrec_imageemb_unique_version')],
            },
        ),
        migrations.CreateModel(
            name='InteractionEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('subject_key', models.CharField(max_length=64)),
                ('event_type', models.CharField(choices=[('view', 'view'), ('click', 'click on a recommendation'), ('cart', 'add to cart'), ('purchase', 'purchase'), ('search', 'photo search')], max_length=10)),
                ('occurred_at', models.DateTimeField()),
                ('source', models.CharField(blank=True, help_text='widget a click came from', max_length=50)),
                ('position', models.PositiveSmallIntegerField(blank=True, null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('product', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='visrec_events', to=settings.VISREC_PRODUCT_MODEL)),
            ],
            options={
                'indexes': [models.Index(fields=['subject_key', 'occurred_at'], name='visrec_event_subject_time'), models.Index(fields=['occurred_at'], name='visrec_event_time'), models.Index(fields=['product', 'event_type'], name='visrec_event_product_type')],
            },
        ),
        migrations.CreateModel(
            name='ProductEmbedding',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('model_version', models.CharField(max_length=100)),
                ('vector', pgvector.django.vector.VectorField()),
                ('image_count', models.PositiveIntegerField(default=1)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('product', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='visrec_embeddings', to=settings.VISREC_PRODUCT_MODEL)),
            ],
            options={
                'indexes': [models.Index(fields=['model_version'], name='visrec_prodemb_version')],
                'constraints': [models.UniqueConstraint(fields=('product', 'model_version'), name='visrec_prodemb_unique_version')],
            },
        ),
    ]
