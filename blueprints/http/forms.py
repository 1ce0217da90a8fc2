"""Flask-WTF forms (CSRF-protected)."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, PasswordField, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from models import ROLES


def error_field_id(form: FlaskForm, field: str | None = None) -> str | None:
    """The id of the form's field at fault, for its page to say the error beside it
    (static/js/core/errors.js, through the message's ``data-field``): the first field
    with an error of its own, else ``field`` (a refusal's field) when the form has it."""
    names = [name for name in form.errors if name != "csrf_token"]
    if not names and field is not None and field in form:
        names = [field]
    return form[names[0]].id if names else None


def first_error(form: FlaskForm) -> str:
    """The first problem of a submitted form, as one line naming its field."""
    for name, errors in form.errors.items():
        if name == "csrf_token":
            return "The form expired; reload the page and try again."
        return f"{getattr(form, name).label.text}: {errors[0]}"
    return "invalid form"


class LoginForm(FlaskForm):
    username = StringField("User name", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])
    submit = SubmitField("Log in")


class CreateUserForm(FlaskForm):
    username = StringField("User name", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(min=8, max=256)])
    # The least power by default: an admin raises it on purpose, never by oversight.
    role = SelectField("Role", choices=list(ROLES), default="viewer")
    submit = SubmitField("Create user")


class UpdateUserForm(FlaskForm):
    """One form for every change to a user; ``action`` says which field counts."""

    action = SelectField("Action", choices=["role", "password", "disable", "enable"])
    role = SelectField("Role", choices=list(ROLES))
    password = PasswordField("New password", validators=[Optional(), Length(min=8, max=256)])
    # Unticked, the change still revokes the tokens made in the last 24 hours.
    revoke_tokens = BooleanField("Also revoke all of this user's API tokens")
    submit = SubmitField("Apply")


class CreateTokenForm(FlaskForm):
    """A personal API token; the role choices (up to the user's own) are set per page."""

    name = StringField("Name", validators=[DataRequired(), Length(max=64)])
    expires_in_days = IntegerField("Expires in (days)",
                                   validators=[Optional(), NumberRange(min=1, max=3650)])
    role = SelectField("Role (yours or lower)", choices=list(ROLES))
    # Checked only when the session began over 15 minutes ago (blueprints.pages.tokens).
    password = PasswordField("Your password (when you logged in over 15 minutes ago)",
                             validators=[Optional(), Length(max=256)])
    submit = SubmitField("Create token")
