"""The Prefect server (API and UI) on ``prefect_port``; its home is ``<state>/prefect``."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from posecore.stack._process import HOST, ProcessRecord
from posecore.stack.service import Launch, Service, StackConfig, base_env, http_ok, register


def prefect_env(state: Path, api_url: str) -> dict[str, str]:
    """The environment of every Prefect process of the stack: its home, its API, no prompts."""
    out = base_env()
    out.update(
        PREFECT_HOME=str(state / "prefect"),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_CLI_PROMPT="false",
    )
    return out


@register
class PrefectServer(Service):
    name = "prefect-server"
    component = "prefect"
    port_setting = "prefect_port"
    stop_wave = 1

    def url(self, config: StackConfig) -> str:
        return f"http://{HOST}:{config.prefect_port}/api"

    def launch(self, state: Path, config: StackConfig, client_env: Mapping[str, str]) -> Launch:
        url = self.url(config)
        argv = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(config.prefect_port)]
        return Launch(
            argv,
            prefect_env(state, url),
            cwd=state,
            url=url,
            stop_signal="SIGINT",
            ports={"http": config.prefect_port},
        )

    def healthy(self, record: ProcessRecord, config: StackConfig) -> bool:
        return http_ok(f"{record.url}/health")
