"""Jupyter server extension baked into the TRE image: refuse the routes that hand out files.

/files (raw download), /view (raw file in a page), /nbconvert (exports) answer 403, the list of
export formats is empty (so JupyterLab offers none), and uploads are capped in size. These are
usability guards: the contents API still returns file contents to the browser (JupyterLab needs it
to open notebooks), and the researcher owns every process in the container. The controls that
hold are outside it: no network route out, and the egress review.
"""

from __future__ import annotations

import json
import os
from typing import Any

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from jupyter_server.utils import url_path_join
from tornado import web
from traitlets import Integer

REFUSED_ROUTES = (r"/files/.*", r"/files", r"/view/.*", r"/nbconvert/.*")
REFUSAL = "Downloads are disabled in this workspace: results leave through an output release request."


class RefusedHandler(web.RequestHandler):
    """403 for every method, answered before any authentication so nothing is served to anyone.

    A plain tornado handler: Jupyter's own error page needs an authenticated user to render.
    """

    def initialize(self, **_kwargs: Any) -> None:
        # Also used as ContentsManager.files_handler_class, which passes a `path` argument.
        pass

    def prepare(self) -> None:
        self.set_status(403)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"message": REFUSAL}))


class NoExportersHandler(web.RequestHandler):
    """/api/nbconvert lists export formats: an empty list, so JupyterLab offers no export."""

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish("{}")


class TreContentsManager(AsyncLargeFileManager):
    """The default contents manager plus an upload size cap that chunked uploads cannot dodge."""

    max_upload_bytes = Integer(64 * 1024 * 1024, config=True, help="Largest file an upload may create.")

    def _too_big(self, size: int) -> web.HTTPError:
        return web.HTTPError(413, f"Upload of {size} bytes exceeds the {self.max_upload_bytes} byte limit.")

    async def save(self, model: dict[str, Any], path: str = "") -> dict[str, Any]:
        content = model.get("content")
        if model.get("type") == "file" and isinstance(content, str):
            # Decoded size of base64 text, without decoding a possibly huge body.
            size = len(content) * 3 // 4 if model.get("format") == "base64" else len(content.encode())
            if size > self.max_upload_bytes:
                raise self._too_big(size)
        result = await super().save(model, path)
        if model.get("chunk") is not None:
            os_path = self._get_os_path(path.strip("/"))
            size = os.path.getsize(os_path)
            if size > self.max_upload_bytes:
                os.remove(os_path)
                raise self._too_big(size)
        return result


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "tre_notebook.server_ext"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    # add_handlers puts these ahead of the server's own routes, so they win.
    base_url = serverapp.web_app.settings["base_url"]
    handlers: list[tuple[str, type[web.RequestHandler]]] = [
        (url_path_join(base_url, route), RefusedHandler) for route in REFUSED_ROUTES
    ]
    handlers.append((url_path_join(base_url, r"/api/nbconvert/?"), NoExportersHandler))
    serverapp.web_app.add_handlers(".*$", handlers)
    serverapp.log.info("tre_notebook: /files, /view and /nbconvert refused; uploads capped")
