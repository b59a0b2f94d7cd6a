"""No output of the real command shows a URL's password, however the admin wrote the URL.

Passwords here are written into the URLs as they are, unencoded: ``/ ? # @ :
%`` and the rest. Many such URLs cannot be read (that is fine, and exit 2);
what is asserted is only that the secret never appears, not even its start,
on stdout or stderr, and that no traceback does.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.shared.conftest import run_cli

# Each form with {pw} where the admin put the password, and the variable it goes in.
FORMS = [
    ("REDIS_URL", "redis://:{pw}@redis.example.com:6379/0"),
    ("REDIS_URL", "redis://push:{pw}@redis.example.com/1"),
    ("REDIS_URL", "rediss://{pw}@redis.example.com"),
    ("REDIS_URL", "redis+unix:///run/redis.sock?db=0&pass={pw}"),
    ("DATABASE_URL", "postgres://nc:{pw}@db.example.com:5432/nextcloud"),
    ("DATABASE_URL", "mysql://nc:{pw}@db.example.com/nextcloud"),
    ("DATABASE_URL", "postgres://nc:{pw}@/nextcloud?host=/run/postgresql"),
]
VALID = {
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "DATABASE_URL": "sqlite:///var/lib/nextcloud/owncloud.db",
}
# "Pw§" starts every password: if any head of the secret shows, it shows.
HEAD = "Pw§"
PASSWORDS = st.text(alphabet="/?#@:%&=+;[] aZ9!*'~é", max_size=12).map(lambda t: f"{HEAD}{t}§")


def _assert_secret_hidden(variable: str, form: str, password: str) -> None:
    url = form.format(pw=password)
    env = {**VALID, "NEXTCLOUD_URL": "https://cloud.example.com", variable: url}
    result = run_cli("--dump-config", env=env)
    output = result.stdout + result.stderr
    assert result.returncode in (0, 2), output
    assert "Traceback" not in output, output
    for shown in (password, quote(password, safe=""), HEAD):
        assert shown not in output, output


# The forms of the issue: a "/" or a "?" ends the authority early for a URL parser.
@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("REDIS_URL", "redis://:Pw§S3cr3t/H§@redis.example.com:6379/0"),
        ("REDIS_URL", "redis://:Pw§S3cr3t?H§@redis.example.com:6379/0"),
        ("DATABASE_URL", "postgres://nc:Pw§S3cr3t/H§@db.example.com/nextcloud"),
        ("DATABASE_URL", "mysql://nc:Pw§S3cr3t?H§@db.example.com/nextcloud"),
        ("REDIS_URL", "redis://u:1234#Pw§@redis.example.com/0"),
    ],
)
def test_a_password_with_an_unencoded_separator_is_not_shown(variable: str, url: str) -> None:
    result = run_cli("--dump-config", env={**VALID, "NEXTCLOUD_URL": "https://x", variable: url})
    assert result.returncode == 2, result.stdout
    assert "percent-encoded" in result.stderr
    assert "S3cr3t" not in result.stderr + result.stdout
    assert HEAD not in result.stderr + result.stdout


@settings(max_examples=30, deadline=None)
@given(form=st.sampled_from(FORMS), password=PASSWORDS)
@example(form=FORMS[0], password="Pw§S3cr3t/H§")
@example(form=FORMS[4], password="Pw§[§")
def test_no_output_shows_the_password(form: tuple[str, str], password: str) -> None:
    _assert_secret_hidden(*form, password)
