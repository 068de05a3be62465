"""The egress review: requests, files, automated checks, two independent reviews, signed releases.

`workflow` holds the pure rules (states, transitions, who may act); `models` the tables; `storage`,
`signing`, `bundle` the immutable files, keys and release bundles; `commands` every change and
`queries` every read, both on an `EgressContext` (`base`); `checks` and `project_context` run the
disclosure engine (egress.sdc) with a project's rules.
"""
