"""Single sign-on of a TRE web service (egress, portal) through JupyterHub OAuth (authorization code
+ PKCE), and who is asking.

The browser session is an encrypted cookie holding the hub-issued token and this session's CSRF
secret; the username is never stored in it. Every request asks the hub who the token belongs to:
page views may use HubAuth's short cache, state-changing requests always ask afresh, so a user the
hub has removed or logged out cannot act on a cached identity. Project roles are not taken from the
hub at all: each service reads them from the registry per request.

Tests that do not run a hub replace `current_identity` with a FastAPI dependency override inside
the test process; there is no setting or environment variable that turns authentication off.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlparse

from cryptography.fernet import Fernet, InvalidToken
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from jupyterhub.services.auth import HubOAuth, check_scopes

from hub.kernel.secrets import read_or_create_secret
from hub.kernel.settings import Settings

STATE_MAX_AGE = 600
IDENTITY_CACHE_SECONDS = 60


@dataclass(frozen=True)
class Identity:
    username: str
    csrf: str  # the session's CSRF secret; empty for API-token callers (browsers never add headers)
    via: str  # "cookie" | "token"


class NeedLogin(Exception):
    """No valid session: pages redirect to the hub's login, the API answers 401."""


def _fernet(settings: Settings, service: str) -> Fernet:
    secret = read_or_create_secret(settings.state_dir / f"{service}-session.secret")
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret).digest()))


def safe_next(prefix: str, candidate: str | None) -> str:
    """Only redirect back into this service: no scheme, no host, no `//`."""
    if candidate and candidate.startswith(prefix) and not candidate.startswith("//"):
        parsed = urlparse(candidate)
        if not parsed.scheme and not parsed.netloc:
            return candidate
    return prefix


class HubSSO:
    """`public_url` is the service's own public URL as JupyterHub gives it (JUPYTERHUB_PUBLIC_URL):
    behind https the cookies are Secure and `__Host-` prefixed (bound to this origin, path /, so no
    other origin below the TRE's domain can set or replace them). `service` names the cookies and
    the session secret: each service's sessions are its own."""

    def __init__(self, settings: Settings, prefix: str, public_url: str = "", service: str = "egress"):
        self.prefix = prefix  # e.g. /services/egress/
        self.service = service
        self.hub = HubOAuth(cache_max_age=IDENTITY_CACHE_SECONDS)
        self.fernet = _fernet(settings, service)
        self.secure = urlparse(public_url).scheme == "https"
        self.cookie_prefix = "__Host-" if self.secure else ""
        self.cookie_path = "/" if self.secure else prefix
        self.session_cookie = f"{self.cookie_prefix}{service}-session"
        self.state_cookie = f"{self.cookie_prefix}{service}-oauth-state"

    @property
    def hub_url(self) -> str:
        """The hub's home page (on the hub's own origin)."""
        return self.hub.hub_host + self.hub.hub_prefix + "home"

    def _cookie(self, response: Response, name: str, value: str, max_age: int | None = None) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=self.cookie_path,
            httponly=True,
            secure=self.secure,
            samesite="lax",
        )

    def login(self, request: Request) -> Response:
        next_url = safe_next(self.prefix, request.query_params.get("next"))
        verifier, challenge, method = self.hub.generate_pkce_code_challenge()
        state = secrets.token_urlsafe(16)
        sealed = self.fernet.encrypt(json.dumps({"s": state, "v": verifier, "n": next_url}).encode()).decode()
        params = {"state": state, "code_challenge": challenge, "code_challenge_method": method}
        sep = "&" if "?" in self.hub.login_url else "?"
        response = RedirectResponse(self.hub.login_url + sep + urlencode(params), status_code=302)
        self._cookie(response, self.state_cookie, sealed, STATE_MAX_AGE)
        return response

    async def callback(self, request: Request) -> Response:
        code = request.query_params.get("code")
        state = request.query_params.get("state")
        sealed = request.cookies.get(self.state_cookie, "")
        try:
            saved = json.loads(self.fernet.decrypt(sealed.encode(), ttl=STATE_MAX_AGE))
        except (InvalidToken, ValueError):
            saved = None
        if not code or not saved or not state or not secrets.compare_digest(state, saved["s"]):
            raise NeedLogin("OAuth state does not match; log in again.")
        token = await self.hub.token_for_code(code, code_verifier=saved["v"], sync=False)
        model = await self.hub.user_for_token(token, use_cache=False, sync=False)
        if not model or model.get("kind", "user") != "user":
            raise NeedLogin("The hub did not identify a user.")
        response = RedirectResponse(safe_next(self.prefix, saved["n"]), status_code=302)
        self._cookie(response, self.session_cookie, self.sealed_session(token, secrets.token_urlsafe(32)))
        response.delete_cookie(self.state_cookie, path=self.cookie_path, secure=self.secure)
        return response

    def sealed_session(self, token: str, csrf: str) -> str:
        """The session cookie's value: the hub-issued token and the session's CSRF secret, encrypted
        with this service's key (`identify` reads it back)."""
        return self.fernet.encrypt(json.dumps({"t": token, "c": csrf}).encode()).decode()

    def logout(self) -> Response:
        response = RedirectResponse(self.hub.hub_host + self.hub.hub_prefix + "logout", status_code=302)
        response.delete_cookie(self.session_cookie, path=self.cookie_path, secure=self.secure)
        return response

    async def identify(self, request: Request, fresh: bool) -> Identity:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if token and scheme.lower() in ("token", "bearer"):
            via, csrf = "token", ""
        else:
            try:
                session = json.loads(
                    self.fernet.decrypt(request.cookies.get(self.session_cookie, "").encode())
                )
            except (InvalidToken, ValueError):
                raise NeedLogin("No session.") from None
            token, csrf, via = session["t"], session["c"], "cookie"
        model: dict[str, Any] | None = await self.hub.user_for_token(token, use_cache=not fresh, sync=False)
        if not model or model.get("kind", "user") != "user" or not model.get("name"):
            raise NeedLogin("The hub no longer accepts this session.")
        # Only tokens issued for this service count: a workspace's server token names the same
        # user but was never meant to act in this service.
        if self.hub.access_scopes and not check_scopes(self.hub.access_scopes, set(model.get("scopes", []))):
            raise NeedLogin(f"This token does not grant access to the {self.service} service.")
        return Identity(model["name"], csrf, via)


def hub_sso(request: Request) -> HubSSO | None:
    """The application's sign-in through the hub (None when started without one, in tests)."""
    return request.app.state.sso


async def current_identity(request: Request) -> Identity:
    """The caller, as the hub sees them now (tests override this dependency, nothing else can)."""
    sso = hub_sso(request)
    if sso is None:
        raise NeedLogin("This service was started without a hub to sign in with.")
    return await sso.identify(request, fresh=request.method not in ("GET", "HEAD"))


def sign_in_routes(base: str) -> APIRouter:
    """A service's /login, /oauth_callback and /logout, through its app's HubSSO (`app.state.sso`)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/login")
    async def login(request: Request) -> Response:
        if (sso := hub_sso(request)) is None:
            raise NeedLogin("no hub configured")
        return sso.login(request)

    @router.get("/oauth_callback")
    async def oauth_callback(request: Request) -> Response:
        if (sso := hub_sso(request)) is None:
            raise NeedLogin("no hub configured")
        return await sso.callback(request)

    @router.get("/logout")
    async def logout(request: Request) -> Response:
        if (sso := hub_sso(request)) is None:
            return RedirectResponse(f"{base}/", status_code=302)
        return sso.logout()

    return router


def need_login_response(
    request: Request,
    exc: NeedLogin,
    base: str,
    error_page: Callable[[Request, int, str], Response],
    api: bool,
) -> Response:
    """What a service answers without a session: a failed OAuth callback is an error page, API calls
    and writes get 401, page views go to the hub's login and come back."""
    if request.url.path.startswith(f"{base}/oauth_callback"):
        return error_page(request, 400, str(exc))
    if api or request.method != "GET":
        return JSONResponse({"detail": f"Not signed in: {exc}"}, status_code=401)
    return RedirectResponse(f"{base}/login?next={request.url.path}", status_code=302)
