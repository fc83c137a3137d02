"""A real OpenID Connect provider on loopback for the SSO tests: oidc-provider-mock (a
kept test provider built on Authlib's server side), in a thread, on a free port.

The provider signs real ID tokens with its own RSA key, serves discovery and keys, and
redeems each code once. It takes any client id and secret, lets a test set a person's
claims (`set_user`), and signs a person in when its authorisation form is posted with
their `sub` (what `authorize` does, as the person's browser would).

oidc-provider-mock does not check PKCE itself, so `_PkceCheck` sits in front of it and
does what RFC 7636 asks of a provider: it keeps the code_challenge of each authorisation
request with the code it issues, and refuses a token request whose code_verifier does
not hash to it (invalid_grant).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import warnings
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
from werkzeug.serving import make_server

with warnings.catch_warnings():
    # It imports Authlib's deprecated authlib.jose (its own affair, not ours).
    warnings.simplefilter("ignore")
    import oidc_provider_mock

CLIENT_ID = "nyhedsbreve-test"
CLIENT_SECRET = "test-client-secret"


class _PkceCheck:
    """WSGI middleware: PKCE (S256) enforced in front of the provider."""

    def __init__(self, app: Callable) -> None:
        self.app = app
        self.challenges: dict[str, str] = {}  # state -> challenge, then code -> challenge
        self.verified = 0
        self.lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/oauth2/authorize":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            state = query.get("state", [""])[0]
            if query.get("code_challenge_method", [""])[0] == "S256":
                with self.lock:
                    self.challenges[state] = query.get("code_challenge", [""])[0]

            def remember(status: str, headers: list, *args: Any):
                for name, value in headers:
                    if name.lower() == "location":
                        answer = parse_qs(urlsplit(value).query)
                        code = answer.get("code", [""])[0]
                        with self.lock:
                            if code and state in self.challenges:
                                self.challenges[code] = self.challenges.pop(state)
                return start_response(status, headers, *args)

            return self.app(environ, remember)
        if path == "/oauth2/token" and environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            form = parse_qs(body.decode())
            code = form.get("code", [""])[0]
            verifier = form.get("code_verifier", [""])[0]
            with self.lock:
                challenge = self.challenges.get(code)
            digest = hashlib.sha256(verifier.encode()).digest()
            computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if challenge is None or computed != challenge:
                payload = json.dumps({"error": "invalid_grant", "error_description": "PKCE"})
                start_response("400 Bad Request", [("Content-Type", "application/json")])
                return [payload.encode()]
            with self.lock:
                self.verified += 1
            import io

            environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)


class Provider:
    """The provider, serving on http://localhost:<port> until `stop()`."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            app = oidc_provider_mock.app(require_nonce=True)
        self.pkce = _PkceCheck(app.wsgi_app)
        app.wsgi_app = self.pkce
        # "localhost", as the provider names itself in its issuer (its Host header).
        self.server = make_server("localhost", 0, app, threaded=True)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://localhost:{self.server.server_port}"

    def start(self) -> Provider:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def set_user(self, sub: str, claims: dict[str, Any]) -> None:
        """The claims the provider gives this person from now on."""
        response = httpx.put(f"{self.url}/users/{quote(sub, safe='')}", json=claims, timeout=10)
        assert response.status_code == 204, response.text

    def authorize(self, authorize_url: str, sub: str | None, *, deny: bool = False) -> str:
        """The person signs in (or refuses) at the provider: the URL it sends them back to."""
        assert authorize_url.startswith(self.url + "/oauth2/authorize?"), authorize_url
        form = {"action": "deny"} if deny else {"sub": sub}
        response = httpx.post(authorize_url, data=form, timeout=10)
        assert response.status_code == 302, response.text
        return response.headers["Location"]
