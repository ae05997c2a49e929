from django.db import migrations, models


class Migration(migrations.Migration):
    """Every existing row was mail: it gets "email"."""

    dependencies = [("smtpconfig", "0002_noticelog_kind_is_the_senders")]

    operations = [
        migrations.AddField(
            model_name="noticelog",
            name="channel",
            field=models.CharField(
                default="email",
                help_text="How it went out: “email”, or the sender's channel name.",
                max_length=120,
            ),
        ),
    ]
