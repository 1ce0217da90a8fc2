"""The webhook form of ``/admin/webhooks`` (Flask-WTF, CSRF-protected). It checks the
shape only; :func:`services.webhooks.spec.parse_hook` applies the same rules as the API."""

from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, SelectMultipleField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional
from wtforms.widgets import CheckboxInput, ListWidget

from services.webhooks import EVENTS, FORMATS, MAX_URL, SECRET_LENGTH

EVENT_LABELS = {"job_started": "a job starts", "job_finished": "a job finishes",
                "host_failed": "a server fails"}
FORMAT_LABELS = {"json": "JSON payload (signed)", "slack": "Slack-compatible {\"text\": …}"}


class WebhookForm(FlaskForm):
    url = StringField("URL", validators=[DataRequired(), Length(max=MAX_URL)])
    events = SelectMultipleField(
        "Send when", choices=[SelectChoice(name, EVENT_LABELS[name]) for name in EVENTS],
        default=list(EVENTS), option_widget=CheckboxInput(),
        widget=ListWidget(prefix_label=False))
    secret = PasswordField("Secret (signs each delivery)",
                           validators=[Optional(), Length(max=SECRET_LENGTH[1])])
    format = SelectField("Body", choices=[SelectChoice(name, FORMAT_LABELS[name])
                                          for name in FORMATS])
    submit = SubmitField("Add webhook")
