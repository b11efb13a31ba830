"""python -m sparsetune [group=option ...] [key=value ...]: the train.py app, also where no console script is on PATH."""
from .cli import app

app()
