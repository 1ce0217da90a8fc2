"""Flask extension objects, created unbound and bound in ``create_app``.

Keeping them here (and not in ``app.py``) means no module ever imports the
application object, so tests can build a fresh app per test.
"""

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_socketio import SocketIO
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect

from models import Base

db = SQLAlchemy(model_class=Base)
migrate = Migrate()
login_manager = LoginManager()
socketio = SocketIO()
csrf = CSRFProtect()
# No default limits: only the routes that ask for one (login) are limited.
limiter = Limiter(key_func=get_remote_address, default_limits=[])
