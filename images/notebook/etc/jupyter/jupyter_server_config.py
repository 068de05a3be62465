"""Jupyter server settings baked into the TRE notebook image (read by jupyterhub-singleuser too).

This directory is JUPYTER_CONFIG_DIR and root-owned, and JUPYTERHUB_DISABLE_USER_CONFIG keeps
config in $HOME out, so a researcher cannot switch these off by writing a file. They are
usability guards, not the security boundary: the researcher owns every process in the
container, and the real controls are outside it (network isolation, read-only mounts, egress
review). See docs: the contents API still returns file contents to the browser, by design.
"""

import os

c = get_config()  # type: ignore[name-defined]  # noqa: F821  (injected by traitlets)

# No shell: terminals are the easiest way around every other guard.
c.ServerApp.terminals_enabled = False
# No raw-file or export routes; tre_notebook.server_ext answers 403 on /files, /view, /nbconvert.
c.ContentsManager.files_handler_class = "tre_notebook.server_ext.RefusedHandler"
c.ContentsManager.allow_hidden = False
# Uploads: one request may not exceed 64 MiB, and no uploaded file (even chunked) may exceed the cap.
_max_upload = int(os.environ.get("TRE_MAX_UPLOAD_BYTES", str(64 * 1024 * 1024)))
c.ServerApp.contents_manager_class = "tre_notebook.server_ext.TreContentsManager"
c.TreContentsManager.max_upload_bytes = _max_upload
c.ServerApp.max_body_size = _max_upload + 1024 * 1024  # room for the JSON envelope
c.ServerApp.max_buffer_size = _max_upload + 1024 * 1024
# No trash: the root filesystem is read-only and a home trash would just keep deleted data.
c.FileContentsManager.delete_to_trash = False
# Notebook trust lives in memory, with a key per server start: Jupyter's data directory (where the
# database and the key would go) is read-only, in the image.
c.NotebookNotary.db_file = ":memory:"
c.NotebookNotary.secret = os.urandom(32)

# The workspace has no internet: do not ask for news, updates or extension listings.
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.handlers.announcements.NeverCheckForUpdate"
c.LabApp.extension_manager = "readonly"
# JUPYTER_CONFIG_DIR is read-only, so keep per-user UI state in the (writable) home.
_lab_home = os.path.join(os.path.expanduser("~"), ".jupyter", "lab")
c.LabApp.user_settings_dir = os.path.join(_lab_home, "user-settings")
c.LabApp.workspaces_dir = os.path.join(_lab_home, "workspaces")

c.ServerApp.open_browser = False
