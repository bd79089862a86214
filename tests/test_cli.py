from __future__ import annotations

from click.testing import CliRunner

from monitor.cli import main
from tests import server as srv
from tests.conftest import write_config


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_collect_prints_a_line_per_source_and_exits_0_despite_failures(server, tmp_path, db_path):
    good = server.feed("/rnz.xml", "rnz_national.xml")
    bad = server.route("/gone", srv.status(410))
    config = write_config(tmp_path, [{"name": "RNZ", "url": good}, {"name": "Gone", "url": bad}])
    result = invoke("collect", "--config", str(config), "--db", str(db_path))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "RNZ: 3 new, 0 updated, 0 unchanged" in lines
    assert any(line.startswith("Gone: error [http_error]: HTTP 410") for line in lines)
    assert lines[-1] == "2 sources polled, 3 new articles, 1 failed"

    again = invoke("collect", "--config", str(config), "--db", str(db_path), "--source", "RNZ")
    assert again.stdout.splitlines()[0] == "RNZ: 0 new, 0 updated, 3 unchanged"


def test_invalid_config_exits_2_naming_file_and_line(tmp_path, db_path):
    config = tmp_path / "feeds.yaml"
    config.write_text("sources:\n  - name: A\n    url: http://a.example/\n    intervall: 5m\n")
    result = CliRunner().invoke(main, ["collect", "--config", str(config), "--db", str(db_path)])
    assert result.exit_code == 2
    assert f"{config}:4: sources[A].intervall: unknown key" in result.output
    assert not db_path.exists()


def test_unusable_database_exits_2(server, tmp_path):
    config = write_config(tmp_path, [{"name": "A", "url": server.url("/x")}])
    (tmp_path / "blocker").write_text("a file where a directory should be")
    result = CliRunner().invoke(
        main, ["collect", "--config", str(config), "--db", str(tmp_path / "blocker" / "c.db")]
    )
    assert result.exit_code == 2
    assert "cannot use" in result.output and "coverage database" in result.output


def test_unknown_source_name_exits_2(server, tmp_path, db_path):
    config = write_config(tmp_path, [{"name": "A", "url": server.url("/x")}])
    result = CliRunner().invoke(
        main, ["collect", "--config", str(config), "--db", str(db_path), "--source", "B"]
    )
    assert result.exit_code == 2
    assert "no source named 'B'" in result.output


def test_sources_prints_health(server, tmp_path, db_path):
    bad = server.route("/broken", srv.status(500))
    good = server.feed("/rnz.xml", "rnz_national.xml")
    config = write_config(tmp_path, [{"name": "Broken", "url": bad}, {"name": "RNZ", "url": good}])
    invoke("collect", "--config", str(config), "--db", str(db_path))
    output = invoke("sources", "--db", str(db_path)).output
    broken, error, rnz = output.splitlines()
    assert broken.startswith("Broken: http_error; failures 1; last ok never; next poll 20")
    assert error.strip() == "last error: HTTP 500 Internal Server Error: server error"
    assert rnz.startswith("RNZ: ok; failures 0; last ok 20") and "NZ" in rnz  # NZDT or NZST


def test_sources_on_an_empty_database(db_path):
    assert "No sources yet" in invoke("sources", "--db", str(db_path)).output
