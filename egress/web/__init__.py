"""The egress service on the web: pages and a JSON API (see `app.create_app`)."""
