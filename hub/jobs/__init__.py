"""Jobs: a researcher's notebook run, with parameters, in a container of its own.

A job is asked for from inside a workspace (`tre_notebook.jobs`, through the hub API, the one host
port a workspace reaches) and run on the host by the job runner (`python -m hub.jobs`, a managed
service of the hub): the workspace's image, hardening and limits, the project's release read-only at
/data, the researcher's own project home, no network at all. It outlives the workspace and writes its
executed notebook, its log and whatever the notebook saves into that home.

rules.py holds the decisions (statuses, parameters, who starts next), models.py the table,
service.py what people do (submit, list, cancel), runner.py the running, handlers.py the hub API.
"""
