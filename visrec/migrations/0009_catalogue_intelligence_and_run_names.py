# visrec 0.9: the catalogue intelligence admin (a proxy of ProductEmbedding) and "scheduled run" as the run records' name.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('visrec', '0008_event_arm_database_default'),
    ]

    operations = [
        migrations.CreateModel(
            name='CatalogueIntelligence',
            fields=[
            ],
            options={
                'verbose_name': 'catalogue intelligence',
                'verbose_name_plural': 'catalogue intelligence',
                'proxy': True,
                'indexes': [],
                'constraints': [],
            },
            bases=('visrec.productembedding',),
        ),
        migrations.AlterModelOptions(
            name='taskrun',
            options={'ordering': ['-started_at'], 'verbose_name': 'scheduled run'},
        ),
    ]
