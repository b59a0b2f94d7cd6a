"""The config.php reader on PHP text: values, expressions, statements and errors."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.config.phpconfig import (
    PhpArray,
    PhpConstant,
    config_files,
    evaluate_config_php,
    read_nextcloud_config,
)
from shared.errors import ConfigError


def php(body: str, environ: dict[str, str] | None = None) -> PhpArray:
    config = evaluate_config_php(f"<?php\n{body}\n", "/srv/nc/config/config.php", environ or {})
    assert config is not None
    return config


def value(expression: str, environ: dict[str, str] | None = None) -> object:
    return php(f"$CONFIG = ['v' => {expression}];", environ)["v"]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("'it\\'s \\\\ \\n'", "it's \\ \\n"),
        ('"tab\\there\\x41\\101\\u{263A}\\$"', "tab\there\x41\x41\u263a$"),
        ("42", 42),
        ("-7", -7),
        ("0755", 0o755),
        ("0x1F", 31),
        ("1_000", 1000),
        ("1.5e3", 1500.0),
        ("TRUE", True),
        ("false", False),
        ("NULL", None),
        ("60 * 5", 300),
        ("60 * 60 * 24 + 1", 86401),
        ("(2 + 3) * 4", 20),
        ("10 / 4", 2.5),
        ("10 / 5", 2),
        ("7 % 3", 1),
        ("2 ** 10", 1024),
        ("'a' . 'b' . 1 . true", "ab11"),
        ("'x' . 60 * 5", "x300"),
        ("\\Memcached::OPT_COMPRESSION", PhpConstant("\\Memcached::OPT_COMPRESSION")),
        ("\\RedisCluster::FAILOVER_ERROR", PhpConstant("\\RedisCluster::FAILOVER_ERROR")),
        ("OC::$SERVERROOT . '/apps'", "/srv/nc/apps"),
        ("\\OC::$SERVERROOT", "/srv/nc"),
        ("__DIR__", "/srv/nc/config"),
        ("getenv('SET')", "yes"),
        ("getenv('MISSING')", False),
        ("getenv('MISSING') ?: 'fallback'", "fallback"),
        ("getenv('SET') ? 'a' : 'b'", "a"),
        ("null ?? 'n'", "n"),
        ("(int) '42abc'", 42),
        ("(string) false", ""),
        ("(bool) '0'", False),
        ("trim('  x ')", "x"),
        ("strtolower('ABC') === 'abc'", True),
        ("'1' == 1", True),
        ("'1' === 1", False),
        ("getenv('SET')[0]", "y"),
        ("! true || false", False),
        ("[1, 2, 'k' => 3, 4,]", {0: 1, 1: 2, "k": 3, 2: 4}),
        ("array('5' => 'a', 'b')", {5: "a", 6: "b"}),
        ("[[1], ['x' => [true]]]", {0: {0: 1}, 1: {"x": {0: True}}}),
    ],
)
def test_expressions(expression: str, expected: object) -> None:
    assert value(expression, {"SET": "yes"}) == expected


def test_comments_everywhere_and_close_tag() -> None:
    config = php(
        """
        # hash comment
        $CONFIG = array ( // line comment
          'a' /* inline */ => 1, # comment
        );
        ?>
        $CONFIG = 'not php any more';
        """
    )
    assert config == {"a": 1}


def test_assignments_and_branches() -> None:
    config = php(
        """
        $CONFIG['redis']['host'] = 'h';
        $CONFIG['redis']['port'] = 1;
        $CONFIG['list'][] = 'a';
        $CONFIG['list'][] = 'b';
        $CONFIG['s'] = 'x';
        $CONFIG['s'] .= 'y';
        $tmp = $CONFIG['list'];
        $tmp[] = 'not shared';
        if (getenv('NOPE')) {
            $CONFIG['never'] = file_get_contents('/nonexistent');
        } elseif (false) {
            $CONFIG['never'] = 1;
        } else if (1 > 2) {
            $CONFIG['never'] = 2;
        } else {
            $CONFIG['else'] = true;
        }
        if (true) $CONFIG['single'] = 1;
        """
    )
    assert config == {
        "redis": {"host": "h", "port": 1},
        "list": {0: "a", 1: "b"},
        "s": "xy",
        "else": True,
        "single": 1,
    }


def test_file_get_contents_reads_secret_files(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    got = value("trim(file_get_contents(getenv('F')))", {"F": str(secret)})
    assert got == "s3cret"


@pytest.mark.parametrize(
    ("body", "position", "message"),
    [
        ("$CONFIG = array('a' => 1 'b' => 2);", "2:26", "expected ')'"),
        ("$CONFIG = ['a' => 'open];", "2:19", "unterminated string"),
        ("$CONFIG = [\n/* never closed", "3:1", "unterminated /* comment"),
        ("$CONFIG = [system('id')];", "2:12", "unsupported function system()"),
        ('$CONFIG = ["$x"];', "2:13", "variables inside double-quoted strings"),
        ("$CONFIG = [1 / 0];", "2:14", "division by zero"),
        ("$CONFIG = [X::$y];", "2:15", "unknown static property"),
        ("$CONFIG = 'a'; $CONFIG['k'] = 1;", "2:16", "is not an array"),
        ("$CONFIG = [`ls`];", "2:12", "unexpected character '`'"),
        ("$CONFIG = [1]", "3:1", ""),
    ],
)
def test_errors_name_file_line_and_column(body: str, position: str, message: str) -> None:
    if body == "$CONFIG = [1]":
        # A missing ';' before the end of the file is accepted, like PHP does before '?>'.
        assert php(body) == {0: 1}
        return
    with pytest.raises(ConfigError) as caught:
        php(body)
    assert caught.value.option == f"/srv/nc/config/config.php:{position}"
    assert caught.value.source == "config.php"
    assert message in caught.value.message


def test_no_open_tag_is_not_a_config() -> None:
    with pytest.raises(ConfigError, match="no '<\\?php' open tag"):
        evaluate_config_php("$CONFIG = [];", "x.php", {})


def test_unset_config_in_optional_file_is_none() -> None:
    assert evaluate_config_php("<?php if (false) { $CONFIG = []; }", "x.php", {}) is None


def test_glob_order_and_merge(tmp_path: Path) -> None:
    (tmp_path / "config.php").write_text("<?php $CONFIG = ['a' => 1, 'r' => ['x' => 1]];")
    (tmp_path / "z.config.php").write_text("<?php $CONFIG = ['a' => 3];")
    (tmp_path / "m.config.php").write_text("<?php $CONFIG = ['a' => 2, 'r' => ['y' => 2]];")
    (tmp_path / "other.php").write_text("<?php $CONFIG = ['a' => 'never'];")
    main = str(tmp_path / "config.php")
    assert [Path(f).name for f in config_files(main, True)] == [
        "config.php",
        "m.config.php",
        "z.config.php",
    ]
    assert read_nextcloud_config(main, {}, glob=True) == {"a": 3, "r": {"y": 2}}
    assert read_nextcloud_config(main, {}, glob=False) == {"a": 1, "r": {"x": 1}}


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_nextcloud_config(str(tmp_path / "missing.php"), {})


@given(st.text(max_size=200))
def test_garbage_raises_only_config_error(text: str) -> None:
    for source in (text, "<?php " + text, "<?php $CONFIG = [" + text):
        with contextlib.suppress(ConfigError):
            evaluate_config_php(source, "fuzz.php", {})


def test_deep_nesting_is_refused_not_a_crash() -> None:
    with pytest.raises(ConfigError, match="nested too deeply"):
        php("$CONFIG = " + "[" * 500 + "]" * 500 + ";")
    with pytest.raises(ConfigError, match="nested too deeply"):
        php("{" * 500 + "}" * 500)
