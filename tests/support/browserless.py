"""A minimal HTTP client over real sockets (urllib), with or without a cookie jar."""

from __future__ import annotations

import http.cookiejar
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class HttpClient:
    def __init__(self, cookies: bool = True) -> None:
        handlers: list = [_NoRedirect()]
        self.jar = http.cookiejar.CookieJar()
        if cookies:
            handlers.append(urllib.request.HTTPCookieProcessor(self.jar))
        self.opener = urllib.request.build_opener(*handlers)

    def request(self, url: str, data: bytes | None = None, headers: dict | None = None) -> Reply:
        request = urllib.request.Request(url, data=data, headers=headers or {})
        try:
            with self.opener.open(request, timeout=10) as response:
                return Reply(response.status, dict(response.headers), response.read().decode())
        except urllib.error.HTTPError as error:
            return Reply(error.code, dict(error.headers), error.read().decode())

    def get(self, url: str) -> Reply:
        return self.request(url)

    def post_form(self, url: str, fields: dict | list) -> Reply:
        body = urllib.parse.urlencode(fields, doseq=True).encode()
        return self.request(url, body, {"Content-Type": "application/x-www-form-urlencoded"})

    def post_multipart(self, url: str, fields: dict[str, str]) -> Reply:
        boundary = "----newsletters-test-boundary"
        lines = []
        for name, value in fields.items():
            lines += [f"--{boundary}", f'Content-Disposition: form-data; name="{name}"', "", value]
        lines += [f"--{boundary}--", ""]
        body = "\r\n".join(lines).encode()
        return self.request(
            url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
