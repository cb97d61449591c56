from pathlib import Path

from app.config import Settings


def test_defaults_follow_the_contract(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert (s.host, s.port, s.max_body_bytes) == ("0.0.0.0", 8080, 1048576)
    assert s.store_url == "sqlite:///./data/enricher.db"
    assert s.llm_base_url == "https://api.holysheep.ai/v1" and s.llm_model == "deepseek-chat"
    assert (s.llm_timeout_seconds, s.llm_max_attempts, s.llm_concurrency) == (20, 3, 8)
    assert s.workers == 32, "workers are not bound to LLM_CONCURRENCY"
    assert s.graph_base_url == "http://localhost:9090"
    assert not s.llm_enabled


def test_holysheep_and_analyzer_aliases_are_read(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOLYSHEEP_API_KEY", "fake-hs-key")
    monkeypatch.setenv("ANALYZER_MODEL", "gpt-4o-mini")
    s = Settings()
    assert s.llm_api_key.get_secret_value() == "fake-hs-key" and s.llm_model == "gpt-4o-mini"


def test_empty_values_from_env_file_mean_unset(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("LLM_API_KEY=\nWEBHOOK_TOKEN=\nTELEGRAM_THREAD_ID=\nPORT=9999\n")
    s = Settings()
    assert s.llm_api_key is None and s.webhook_token is None and s.port == 9999


def test_secrets_are_hidden_in_repr() -> None:
    s = Settings(llm_api_key="fake-llm-key", _env_file=None)
    assert "fake-llm-key" not in repr(s)
    assert s.secret_values() == ["fake-llm-key"]


def test_env_example_copied_to_env_gives_the_defaults(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    default = Settings()
    example = Path(__file__).parent.parent / ".env.example"
    (tmp_path / ".env").write_text(example.read_text())
    assert Settings() == default


def test_env_example_lists_every_setting() -> None:
    example = (Path(__file__).parent.parent / ".env.example").read_text()
    listed = {line.split("=")[0] for line in example.splitlines() if "=" in line and line[0] != "#"}
    assert {name.upper() for name in Settings.model_fields} == listed


def test_prometheus_header_values_are_scrubbed_like_secrets() -> None:
    s = Settings(
        prometheus_headers='{"X-Scope-OrgID": "tenant-1", "X-Api-Key": "fake-header-key"}',
        prometheus_password="fake-prom-pass",
        _env_file=None,
    )
    assert s.prometheus_header_map == {"X-Scope-OrgID": "tenant-1", "X-Api-Key": "fake-header-key"}
    assert {"fake-prom-pass", "fake-header-key"} <= set(s.secret_values())
    assert "fake-header-key" not in repr(s)


def test_the_pipeline_runs_apart_on_either_store_unless_told_not_to() -> None:
    sqlite, postgres = "sqlite:///data/enricher.db", "postgresql://u:fake-password@db/enricher"
    decided = {
        (setting, url): Settings(
            _env_file=None, store_url=url, pipeline_process=setting
        ).pipeline_apart
        for setting in ("auto", "true", "false")
        for url in (sqlite, postgres)
    }
    assert decided == {
        ("auto", sqlite): True,
        ("auto", postgres): True,
        ("true", sqlite): True,
        ("true", postgres): True,
        ("false", sqlite): False,
        ("false", postgres): False,
    }


def test_an_in_memory_store_keeps_the_pipeline_in_the_webhooks_process() -> None:
    for setting in ("auto", "true"):
        memory = Settings(_env_file=None, store_url="sqlite:///:memory:", pipeline_process=setting)
        assert not memory.pipeline_apart, "a child would have a database of its own"
