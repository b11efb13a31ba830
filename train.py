"""python train.py [group=option ...] [key=value ...] — see README.md. The same app as the installed `sparsetune`
console script: sparsetune.cli.app (configs from the top-level conf/ here)."""
from sparsetune.cli import app

if __name__ == "__main__":
    app()
