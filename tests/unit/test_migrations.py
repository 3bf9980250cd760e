"""The models and the committed migrations agree: ``makemigrations --check`` finds nothing."""

from __future__ import annotations

from io import StringIO

from django.core.management import call_command


def test_no_missing_migrations(db_access: None) -> None:
    out = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out,
                     verbosity=1)
    except SystemExit as exit_:  # --check exits 1 when a migration is missing
        raise AssertionError(f"models changed without a migration:\n{out.getvalue()}") from exit_
    assert "No changes detected" in out.getvalue()
