"""Readiness checks of supervised processes: a TCP port accepts, an HTTP URL answers 2xx, or a
Kafka broker lists itself in the cluster's metadata."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class TcpCheck:
    """Ready when something accepts connections on `host:port`."""

    port: int
    host: str = "127.0.0.1"

    def __call__(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(1.0)
            return sock.connect_ex((self.host, self.port)) == 0

    def describe(self) -> str:
        return f"tcp://{self.host}:{self.port}"


@dataclass(frozen=True)
class HttpCheck:
    """Ready when GET `url` answers with a 2xx status."""

    url: str
    timeout_s: float = 2.0

    def __call__(self) -> bool:
        try:
            return httpx.get(self.url, timeout=self.timeout_s).is_success
        except httpx.HTTPError:
            return False

    def describe(self) -> str:
        return self.url


@dataclass(frozen=True)
class KafkaCheck:
    """Ready when the broker at `bootstrap` answers a metadata request naming a broker (Apache
    Kafka opens its port before it has registered with its controller)."""

    bootstrap: str

    def __call__(self) -> bool:
        from local.kafka import broker_serves

        return broker_serves(self.bootstrap)

    def describe(self) -> str:
        return f"kafka://{self.bootstrap}"


HealthCheck = TcpCheck | HttpCheck | KafkaCheck


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it; a tiny reuse race remains)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
